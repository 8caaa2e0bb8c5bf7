"""The journey pass's overlapped sending: at most `depth` sends in flight, every send's progress counted once, and a
send that fails is raised when the block ends (after the others finished), never swallowed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from activities.channels.delivery import DeliveryService, Progress
from activities.journeys import Sending
from store.channels.records import Step


class FakeDelivery:
    def __init__(self, fail_on: int | None = None) -> None:
        self.running = 0
        self.most = 0
        self.calls = 0
        self.fail_on = fail_on

    async def send_registered(self, steps: Sequence[Step], *, now: datetime | None = None) -> Progress:
        self.calls += 1
        call = self.calls
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        if call == self.fail_on:
            raise RuntimeError("provider down")
        return Progress(claimed=len(steps), sent=len(steps))


def steps(n: int, start: int) -> list[Step]:
    return [Step(start + i, f"journey:1:1:{start + i}:1:push", ["push"], {"push": {"text": "hi"}}) for i in range(n)]


async def test_sends_overlap_up_to_depth_and_each_counts_once() -> None:
    fake = FakeDelivery()
    async with Sending(cast(Any, fake), datetime.now(UTC), depth=2) as sending:
        for b in range(5):
            await sending.hand(steps(3, 100 * b))
    assert fake.calls == 5 and fake.most == 2
    assert sending.progress.sent == 15 and sending.progress.claimed == 15


async def test_a_failed_send_is_raised_after_the_others_finish() -> None:
    fake = FakeDelivery(fail_on=2)
    with pytest.raises(RuntimeError, match="provider down"):
        async with Sending(cast(DeliveryService, fake), datetime.now(UTC), depth=2) as sending:
            await sending.hand(steps(2, 0))
            await sending.hand(steps(2, 10))
    assert fake.running == 0
    assert sending.progress.sent == 2  # the one that went through; the failed batch's plans stay for the sweeper
