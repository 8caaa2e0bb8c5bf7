"""The journey runtime's activity: one pass (or a window of passes) over one journey — consume its new events
from the outbox, advance its due contacts in batches, send through the delivery service — returning when the
next contact is due. Thin: the moves are `store.journeys.runtime`, the rules `domain.journeys`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.channels.delivery import DeliveryService, Progress
from core.confinement import Confinement
from store.channels.records import Claimed, Step
from store.db import transaction
from store.journeys import definitions, runtime

log = structlog.get_logger("nudge.journeys")
ARCHIVE_BATCH = 5000  # contacts of an archived journey ended per transaction


@dataclass
class StepInput:
    journey_id: int
    now: datetime | None = None  # the workflow's clock (compressed in tests); None: the wall clock
    batch_size: int = 1000
    max_batches: int = 50        # per phase and pass, so a pass heartbeats and returns
    window_seconds: float = 0.0  # wall-clock seconds to keep polling while idle (0: one pass)
    poll_seconds: float = 1.0
    send_batch: int = 5000       # steps handed to the delivery service at once (several move batches' worth)


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
    ended: int = 0               # contacts an archive had left, ended by this pass
    more: bool = False           # a phase stopped at max_batches: call again at once
    next_wake: datetime | None = None


class JourneyActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], delivery: DeliveryService, *,
                 default_zone: str = "UTC", rendering: Confinement | None = None) -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.default_zone = default_zone
        self.rendering = rendering or definitions.rendering()  # send templates render in confined workers

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
        if done.status == "archived":  # the contacts the archive's own transaction did not end, a batch at a time
            for _ in range(params.max_batches):
                async with transaction(self.sessions) as s:
                    ended = await definitions.end_all(s, jid, "archived", limit=ARCHIVE_BATCH)
                done.ended += ended
                _beat(done)
                if ended < ARCHIVE_BATCH:
                    return
            done.more = True
            return
        if state is None or state[0] != "live":
            return
        for n in range(params.max_batches):
            async with transaction(self.sessions) as s:
                consumed = await runtime.consume(s, jid, state[1], now, limit=params.batch_size,
                                                 default_zone=self.default_zone, rendering=self.rendering,
                                                 policy=self.delivery.policy)
            _log_failures(jid, consumed.moved)
            # Claimed with the move; sent now (a crash here leaves them to the sweeper).
            if consumed.moved.claimed is not None:
                done.sent += (await self.delivery.send_claimed(consumed.moved.claimed, consumed.moved.sends,
                                                               now=now)).sent
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
        async with Sending(self.delivery, now) as sending:  # sends overlap the next moves (Postgres and Python both)
            for n in range(params.max_batches):
                async with transaction(self.sessions) as s:
                    moved = await runtime.advance_due(s, jid, now, limit=params.batch_size,
                                                      default_zone=self.default_zone, rendering=self.rendering,
                                                      policy=self.delivery.policy)
                _log_failures(jid, moved)
                # Claimed with their moves; sent several batches at a time (fewer round trips). A crash before
                # the send leaves them to the sweeper once their lease runs out, sent once.
                await sending.add(moved, params.send_batch)
                done.advanced += moved.contacts
                done.grants += moved.grants
                _beat(done)
                if moved.contacts < params.batch_size:
                    break
                done.more = done.more or n == params.max_batches - 1
            await sending.flush()
        done.sent += sending.progress.sent
        async with self.sessions() as s:
            done.next_wake = await runtime.next_wake(s, jid)


class Sending:
    """Moves' claimed sends gathered up to a batch, and up to `depth` sends running while the caller moves the next
    contacts: a move and a send each wait on Postgres about half the time, so overlapping them keeps both cores
    busy. Sends in flight take disjoint plans (each its own keys). The plans were claimed (committed) with their
    moves, so a send that fails leaves them to the sweeper, as a crash would; the block waits for every send in
    flight before it ends, and raises what one raised."""

    def __init__(self, delivery: DeliveryService, now: datetime, depth: int = 2) -> None:
        self.delivery = delivery
        self.now = now
        self.depth = depth
        self.progress = Progress()  # every send's, complete when the block ends
        self._flights: list[asyncio.Task[None]] = []
        self._steps: list[Step] = []
        self._claimed = Claimed()

    async def __aenter__(self) -> Sending:
        return self

    async def __aexit__(self, *exc: object) -> None:
        flights, self._flights = self._flights, []
        results = await asyncio.gather(*flights, return_exceptions=True)
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None and exc[0] is None:  # else the caller's own error wins; the sends still finished
            raise failed

    async def add(self, moved: runtime.Advanced, batch: int) -> None:
        """Gather a move's claimed sends; start sending once `batch` are gathered."""
        if moved.claimed is not None:
            self._steps += moved.sends
            self._claimed.merge(moved.claimed)
        if len(self._steps) >= batch:
            await self.flush()

    async def flush(self) -> None:
        """Start sending what is gathered, after the oldest send if `depth` are in flight."""
        if not self._steps:
            return
        steps, claimed, self._steps, self._claimed = self._steps, self._claimed, [], Claimed()
        if len(self._flights) >= self.depth:
            await self._flights.pop(0)
        self._flights.append(asyncio.create_task(self._send(claimed, steps)))

    async def _send(self, claimed: Claimed, steps: list[Step]) -> None:
        self.progress.merge(await self.delivery.send_claimed(claimed, steps, now=self.now))  # the journey's clock


def _log_failures(journey_id: int, moved: runtime.Advanced) -> None:
    for contact_id, node, why in moved.render_failures:  # in the history as `render_failed`; the reason is here
        log.warning("journey send not rendered", journey_id=journey_id, contact_id=contact_id, node=node, error=why)
    for contact_id, node, why in moved.refusals:  # in the history as `grant_refused`
        log.warning("journey grant refused", journey_id=journey_id, contact_id=contact_id, node=node, error=why)


def _beat(done: StepResult) -> None:
    if activity.in_activity():
        activity.heartbeat(done.events, done.advanced)


def _worker_stopping() -> bool:
    return activity.in_activity() and activity.is_worker_shutdown()
