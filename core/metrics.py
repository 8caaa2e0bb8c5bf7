"""Prometheus metrics shared by the API and the worker (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES = Counter("nudge_messages_total", "Messages handed to a channel", ["channel", "outcome"])
BATCH_SECONDS = Histogram("nudge_send_batch_seconds", "Time to send one batch of a campaign run", ["channel"],
                          buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
