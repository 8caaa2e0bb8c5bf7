"""The rules a deployment sends by: frequency caps, quiet hours, receipt windows per channel, and how often a
retryable provider error is retried. Built from settings once per process and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from domain.channels.caps import Cap
from domain.channels.quiet import QuietHours

# How long a channel's receipt may take before silence counts as failure (and the chain falls back). No entry:
# the channel reports nothing worth waiting for (email's SMTP acceptance, the inbox's own write) and accepted is
# final. WeChat's 10 minutes is seed 003's example.
DEFAULT_WINDOWS: dict[str, timedelta] = {"wechat": timedelta(minutes=10), "sms": timedelta(minutes=10),
                                         "push": timedelta(minutes=10)}
# Channels whose acceptance is the delivery itself.
DELIVERED_ON_ACCEPT = frozenset({"inbox"})


@dataclass(frozen=True)
class DeliveryPolicy:
    caps: tuple[Cap, ...] = ()
    quiet: QuietHours | None = None
    default_zone: str = "UTC"
    windows: dict[str, timedelta] = field(default_factory=lambda: dict(DEFAULT_WINDOWS))
    delivered_on_accept: frozenset[str] = DELIVERED_ON_ACCEPT
    retry_after: timedelta = timedelta(minutes=1)  # after a retryable provider error
    # How long a claimed send may take before the sweeper assumes its worker died and sends it again (same key):
    # longer than the slowest batch, so a slow provider is never mistaken for a dead worker.
    lease: timedelta = timedelta(minutes=10)
    max_tries: int = 5                             # per attempt; then the attempt fails and the chain falls back
    rates: dict[str, float] = field(default_factory=dict)  # provider calls a second per channel, all workers together

    def window(self, channel: str) -> timedelta | None:
        return self.windows.get(channel)
