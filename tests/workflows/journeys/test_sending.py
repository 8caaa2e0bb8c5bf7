"""The journey pass's overlapped sending: moves' claimed sends gathered into batches, at most `depth` sends in flight,
every send's progress counted once, and a send that fails is raised when the block ends (after the others finished),
never swallowed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from activities.channels.delivery import DeliveryService, Progress
from activities.journeys import Sending
from store.channels.records import Claimed, Job, Step
from store.journeys.runtime import Advanced


class FakeDelivery:
    def __init__(self, fail_on: int | None = None) -> None:
        self.running = 0
        self.most = 0
        self.calls = 0
        self.fail_on = fail_on

    async def send_claimed(self, claimed: Claimed, steps: Sequence[Step], *, now: datetime | None = None) -> Progress:
        assert len(claimed.jobs) == len(steps)  # the gathered claims travel with their steps
        self.calls += 1
        call = self.calls
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.01)
        self.running -= 1
        if call == self.fail_on:
            raise RuntimeError("provider down")
        return Progress(claimed=len(steps), sent=len(steps))


def moved(n: int, start: int) -> Advanced:
    """A move that claimed `n` sends."""
    sends = [Step(start + i, f"journey:1:1:{start + i}:1:push", ["push"], {"push": {"text": "hi"}})
             for i in range(n)]
    jobs = [Job(s.contact_id, s.key, 1, "push", f"tok-{s.contact_id}", {"text": "hi"}, None, 1) for s in sends]
    return Advanced(contacts=n, sends=sends, claimed=Claimed(jobs=jobs))


async def test_sends_overlap_up_to_depth_and_each_counts_once() -> None:
    fake = FakeDelivery()
    async with Sending(cast(Any, fake), datetime.now(UTC), depth=2) as sending:
        for b in range(10):
            await sending.add(moved(3, 100 * b), batch=6)  # two moves' sends per send
            await sending.add(Advanced(), batch=6)  # a move that sent nothing adds nothing
    assert fake.calls == 5 and fake.most == 2
    assert sending.progress.sent == 30 and sending.progress.claimed == 30


async def test_flush_sends_the_rest_and_nothing_when_empty() -> None:
    fake = FakeDelivery()
    async with Sending(cast(Any, fake), datetime.now(UTC)) as sending:
        await sending.add(moved(4, 0), batch=10)
        assert fake.calls == 0
        await sending.flush()
        await sending.flush()
    assert fake.calls == 1 and sending.progress.sent == 4


async def test_a_failed_send_is_raised_after_the_others_finish() -> None:
    fake = FakeDelivery(fail_on=2)
    with pytest.raises(RuntimeError, match="provider down"):
        async with Sending(cast(DeliveryService, fake), datetime.now(UTC), depth=2) as sending:
            await sending.add(moved(2, 0), batch=1)
            await sending.add(moved(2, 10), batch=1)
    assert fake.running == 0
    assert sending.progress.sent == 2  # the one that went through; the failed batch's plans stay for the sweeper
