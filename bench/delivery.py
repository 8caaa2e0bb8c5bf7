"""`nudge bench delivery`: what the delivery service's bookkeeping costs per message — plans and attempts,
suppression and preference lookups, quiet hours, frequency-cap slots under advisory locks, provider ids — in
batches of 500 through the real email channel to the same SMTP server, against the same messages sent through
the channel alone (checks off), in the same run. The issue's target: < 1 ms added per message."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from typing import Any

from sqlalchemy import text

from activities.channels.delivery import DeliveryService
from activities.channels.inbox import InboxChannel
from api.runtime import Runtime
from bench.core import BenchContext, BenchResult
from channels.base import Message
from domain.channels.caps import parse_caps
from domain.channels.policy import DeliveryPolicy
from domain.channels.quiet import QuietHours
from store.channels import preferences, suppressions
from store.channels.addresses import address_hash
from store.channels.records import Step
from store.db import transaction

NAME = "delivery"
DESCRIPTION = "msgs/s through the delivery service (caps, preferences, quiet hours, fallback records) vs the bare " \
              "email channel, batches of 500"
PARAMS: dict[str, Any] = {"n": 2000, "batch": 500}


async def run(ctx: BenchContext, n: int, batch: int) -> BenchResult:
    runtime = Runtime.build(ctx.settings)
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    # Quiet hours that are checked for every message but hold none back (they are 12 hours away in UTC).
    away = (now + timedelta(hours=12)).time().replace(second=0, microsecond=0, tzinfo=None)
    quiet = QuietHours(away, clock((away.hour + 1) % 24, away.minute))
    policy = DeliveryPolicy(caps=parse_caps("*:3/1d,*:10/7d,email:2/1d"), quiet=quiet)
    service = DeliveryService(runtime.sessions, {"email": runtime.email, "inbox": InboxChannel(runtime.sessions)},
                              policy)
    ids: list[int] = []
    try:
        async with transaction(runtime.sessions) as s:
            ids = list((await s.scalars(text(
                "INSERT INTO contacts (user_id, email, timezone) SELECT 'bench-dl-' || :tag || '-' || i, "
                "'bench-dl-' || :tag || '-' || i || '@bench.invalid', 'Asia/Shanghai' FROM generate_series(1, :n) i "
                "RETURNING id"), {"tag": tag, "n": n})).all())
            for contact in ids[::10]:  # one in ten has rules, one in a hundred is suppressed (→ the inbox)
                await preferences.upsert(s, contact, {("news", "sms"): False, ("*", "push"): False})
            await suppressions.add(s, [("email", address_hash("email", f"bench-dl-{tag}-{i}"
                                                                                   "@bench.invalid"), None, "manual",
                                        "bench") for i in range(1, n + 1, 100)])
        content = {"email": {"subject": "Hello", "text": "Hello from the delivery bench."},
                   "inbox": {"subject": "Hello", "text": "Hello from the delivery bench."}}
        steps = [Step(c, f"delivery:bench-{tag}:s:{c}", ["email", "inbox"], content, "news") for c in ids]

        with ctx.status("Sending through the bare email channel (checks off)…"):
            started = time.perf_counter()
            for i in range(0, n, batch):
                await runtime.email.send_many([Message(f"raw:{s.key}", f"raw-{s.contact_id}@bench.invalid",
                                                       "Hello", "Hello from the delivery bench.")
                                               for s in steps[i:i + batch]])
            bare = time.perf_counter() - started
        with ctx.progress() as progress:
            bar = progress.add_task("Sending through the delivery service", total=n)
            started = time.perf_counter()
            for i in range(0, n, batch):
                await service.send(steps[i:i + batch])
                progress.update(bar, completed=min(n, i + batch))
            checked = time.perf_counter() - started
    finally:
        async with transaction(runtime.sessions) as s:
            for table in ("delivery_attempts", "delivery_plans", "delivery_provider_ids", "frequency_log",
                          "inbox_messages", "contact_preferences"):
                await s.execute(text(f"DELETE FROM {table} WHERE contact_id = ANY(:ids)"), {"ids": ids})
            await s.execute(text("DELETE FROM suppressions WHERE note = 'bench'"))
            await s.execute(text("DELETE FROM contacts WHERE id = ANY(:ids)"), {"ids": ids})
        await runtime.close()
    overhead_ms = (checked - bare) / n * 1000
    return BenchResult(
        bench=NAME, value=n / checked, unit="msgs/s", limit_name="bare email channel", limit=n / bare,
        params={"n": n, "batch": batch},
        rows=[("added per message", f"{overhead_ms:.3f} ms"), ("bare channel", f"{bare:.2f} s"),
              ("delivery service", f"{checked:.2f} s")],
    )
