"""Task activities over the store: the progress engine's long-polling step, the reward dispatcher's poll, and the
lifecycle's reads and writes. Each is idempotent by the business keys in store/tasks."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from activities.tasks.notify import RewardNotifier
from domain.errors import DomainError
from domain.tasks.lifecycle import TaskStatus
from store.db import transaction
from store.tasks import grants, notices
from store.tasks.definitions import get_task, set_status
from store.tasks.progress import Compiled, process_batch


@dataclass
class FollowInput:
    batch_size: int = 5000  # events per transaction: fixed costs (statements, commit) amortised
    poll_seconds: float = 1.0
    window_seconds: float = 300.0


@dataclass
class FollowResult:
    batches: int = 0
    events: int = 0
    matched: int = 0
    rewards: int = 0
    paused: list[int] = field(default_factory=list)  # tasks paused on budget exhaustion


@dataclass
class DispatchInput:
    batch_size: int = 200
    max_batches: int = 20
    poll_seconds: float = 1.0
    window_seconds: float = 60.0


@dataclass
class BatchRef:
    workflow_id: str
    first: int
    last: int
    size: int
    task_id: int | None


@dataclass
class TaskRef:
    task_id: int
    at: float | None = None  # the workflow's clock (epoch seconds), for sweeps it asks for


@dataclass
class TaskState:
    status: str
    name: str
    starts_at: float | None  # epoch seconds; None: no start time (the workflow compares with its own clock)
    ends_at: float | None
    alert: str | None = None


@dataclass
class StatusChange:
    task_id: int
    status: str
    alert: str | None = None


async def _idle(seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(activity.wait_for_worker_shutdown(), seconds)


class TaskActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], notifier: RewardNotifier | None = None) -> None:
        self.sessions = sessions
        self.compiled = Compiled()
        self.notifier = notifier or RewardNotifier(sessions)

    async def _tell_untold(self, limit: int = 500) -> int:
        """Popups for rewards waiting to be claimed, toasts for issued ones the saga did not tell (a risk hold
        released later, a notice step that failed), marked once handed on; a crash in between sends them again
        under the same keys, which the inbox and the delivery plans ignore. A failure is logged and retried at
        the next poll: telling never holds up issuance."""
        async with transaction(self.sessions) as session:
            ids, told = await notices.untold(session, limit=limit)
        if not ids:
            return 0
        try:
            await self.notifier.send(told)
        except Exception as exc:  # noqa: BLE001 - any channel trouble: the grants stay untold, tried again
            activity.logger.warning("reward notices not sent, retried at the next poll: %s", exc)
            return 0
        async with transaction(self.sessions) as session:
            await notices.mark_told(session, ids, now=datetime.now(UTC))
        return len(ids)

    @activity.defn
    async def follow_progress(self, params: FollowInput) -> FollowResult:
        """Advance task progress from the outbox for about `window_seconds`, batch after batch, polling while idle."""
        done = FollowResult()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.window_seconds
        async with heartbeating(lambda: asdict(done)):
            while True:
                async with transaction(self.sessions) as session:
                    batch = await process_batch(session, self.compiled, now=datetime.now(UTC),
                                                limit=params.batch_size)
                if batch.events:
                    done.batches, done.events = done.batches + 1, done.events + batch.events
                    done.matched, done.rewards = done.matched + batch.matched, done.rewards + batch.rewards
                    done.paused += batch.paused
                    for task_id in batch.paused:
                        activity.logger.warning("task %s paused: its budget is exhausted", task_id)
                left = deadline - loop.time()
                if left <= 0 or activity.is_worker_shutdown():
                    return done
                if batch.events < params.batch_size:
                    await _idle(min(params.poll_seconds, left))

    @activity.defn
    async def claim_grant_batches(self, params: DispatchInput) -> list[BatchRef]:
        """Wait (up to the window) for pending grants and cut them into batches; also settles grants the risk
        review decided, lapses unclaimed rewards whose window closed and tells contacts of rewards not told yet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.window_seconds
        async with heartbeating(lambda: None):
            while True:
                now = datetime.now(UTC)
                async with transaction(self.sessions) as session:
                    await grants.settle_held(session, now=now)
                    await grants.lapse_expired(session, now=now)
                    batches = await grants.claim_batches(session, batch_size=params.batch_size,
                                                         max_batches=params.max_batches, now=now)
                await self._tell_untold()
                left = deadline - loop.time()
                if batches or left <= 0 or activity.is_worker_shutdown():
                    return [BatchRef(b.workflow_id, b.first, b.last, b.size, b.task_id) for b in batches]
                await _idle(min(params.poll_seconds, left))

    @activity.defn
    async def task_state(self, ref: TaskRef) -> TaskState:
        async with self.sessions() as session:
            task = await get_task(session, ref.task_id)
        d = task.definition
        return TaskState(task.status.value, d.name, d.starts_at.timestamp() if d.starts_at else None,
                         d.ends_at.timestamp() if d.ends_at else None, task.alert)

    @activity.defn
    async def change_status(self, change: StatusChange) -> str:
        try:
            async with transaction(self.sessions) as session:
                task = await set_status(session, change.task_id, TaskStatus(change.status), now=datetime.now(UTC),
                                        alert=change.alert)
        except DomainError as exc:
            raise ApplicationError(str(exc), non_retryable=True, type=type(exc).__name__) from exc
        return task.status.value

    @activity.defn
    async def lapse_unclaimed(self, ref: TaskRef) -> int:
        async with transaction(self.sessions) as session:
            at = datetime.fromtimestamp(ref.at, UTC) if ref.at is not None else datetime.now(UTC)
            return await grants.lapse_expired(session, now=at, task_id=ref.task_id)
