"""The journey runtime's activity: one pass (or a window of passes) over one journey — consume its new events
from the outbox, advance its due contacts in batches, send through the delivery service — returning when the
next contact is due. Thin: the moves are `store.journeys.runtime`, the rules `domain.journeys`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.channels.delivery import DeliveryService
from store.db import transaction
from store.journeys import runtime


@dataclass
class StepInput:
    journey_id: int
    now: datetime | None = None  # the workflow's clock (compressed in tests); None: the wall clock
    batch_size: int = 1000
    max_batches: int = 50        # per phase and pass, so a pass heartbeats and returns
    window_seconds: float = 0.0  # wall-clock seconds to keep polling while idle (0: one pass)
    poll_seconds: float = 1.0


@dataclass
class StepResult:
    status: str = "missing"      # the journey's status: live, paused, archived, draft, missing
    events: int = 0
    entered: int = 0
    resumed: int = 0
    converted: int = 0
    advanced: int = 0
    sent: int = 0
    grants: int = 0
    more: bool = False           # a phase stopped at max_batches: call again at once
    next_wake: datetime | None = None


class JourneyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], delivery: DeliveryService, *,
                 default_zone: str = "UTC") -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.default_zone = default_zone

    @activity.defn
    async def run_journey(self, params: StepInput) -> StepResult:
        """Consume, advance and send until caught up; with a window, keep polling (wall clock) while idle."""
        done = StepResult()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.window_seconds
        while True:
            await self._pass(params, done)
            if done.status != "live" or done.more or loop.time() >= deadline or _worker_stopping():
                return done
            due_in = (done.next_wake - datetime.now(UTC)).total_seconds() if done.next_wake else params.poll_seconds
            pause = max(0.0, min(params.poll_seconds, due_in, deadline - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(activity.wait_for_worker_shutdown(), pause)

    async def _pass(self, params: StepInput, done: StepResult) -> None:
        now = params.now or datetime.now(UTC)
        jid = params.journey_id
        async with self.sessions() as s:
            state = await runtime.journey_state(s, jid)
        done.status = state[0] if state else "missing"
        done.more = False
        if state is None or state[0] != "live":
            return
        for n in range(params.max_batches):
            async with transaction(self.sessions) as s:
                consumed = await runtime.consume(s, jid, state[1], now, limit=params.batch_size,
                                                 default_zone=self.default_zone)
            if consumed.moved.sends:  # recorded with the move; sent now (a crash here leaves them to the sweeper)
                done.sent += (await self.delivery.send(consumed.moved.sends, now=now)).sent
            done.events += consumed.events
            done.entered += consumed.entered
            done.resumed += consumed.resumed
            done.converted += consumed.converted
            _beat(done)
            if consumed.events == 0:
                break
            done.more = n == params.max_batches - 1
        async with transaction(self.sessions) as s:
            done.entered += await runtime.enter_by_date(s, jid, state[1], now, default_zone=self.default_zone)
        for n in range(params.max_batches):
            async with transaction(self.sessions) as s:
                moved = await runtime.advance_due(s, jid, now, limit=params.batch_size,
                                                  default_zone=self.default_zone)
            if moved.sends:  # recorded with the move; sending now (a crash here leaves them to the sweeper)
                progress = await self.delivery.send(moved.sends, now=now)  # at the journey's clock
                done.sent += progress.sent
            done.advanced += moved.contacts
            done.grants += moved.grants
            _beat(done)
            if moved.contacts < params.batch_size:
                break
            done.more = done.more or n == params.max_batches - 1
        async with self.sessions() as s:
            done.next_wake = await runtime.next_wake(s, jid)


def _beat(done: StepResult) -> None:
    if activity.in_activity():
        activity.heartbeat(done.events, done.advanced)


def _worker_stopping() -> bool:
    return activity.in_activity() and activity.is_worker_shutdown()
