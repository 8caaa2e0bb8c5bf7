"""Delivery activities: send a batch of steps through their chains, and the sweeper's long poll that moves on the
plans whose time came (receipt windows that ended silent, failures reported by webhook, quiet hours that ended,
retries, sends whose worker died)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from activities.channels.delivery import DeliveryService, Progress
from activities.heartbeats import heartbeating
from store.channels import caps, webhooks
from store.channels.records import Step
from store.db import transaction


@dataclass
class StepIn:
    contact_id: int
    key: str
    chain: list[str]
    content: dict[str, dict[str, Any]]
    topic: str | None = None
    transactional: bool = False


@dataclass
class SendStepsInput:
    steps: list[StepIn] = field(default_factory=list)  # ≤ 500


@dataclass
class SweepInput:
    batch_size: int = 500
    poll_seconds: float = 1.0
    window_seconds: float = 300.0


@dataclass
class SweepResult:
    batches: int = 0
    sent: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0
    done: int = 0

    def add(self, p: Progress) -> None:
        self.batches += 1
        self.sent, self.failed, self.suppressed = self.sent + p.sent, self.failed + p.failed, \
            self.suppressed + p.suppressed
        self.deferred, self.done = self.deferred + p.deferred, self.done + p.done


class DeliveryActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], service: DeliveryService, *,
                 callback_tolerance: timedelta = timedelta(minutes=5)) -> None:
        self.sessions = sessions
        self.service = service
        self.tolerance = callback_tolerance

    @activity.defn
    async def send_steps(self, params: SendStepsInput) -> SweepResult:
        """Send a batch of steps; a retry finds them recorded and sends nothing twice."""
        done = SweepResult()
        done.add(await self.service.send([Step(s.contact_id, s.key, s.chain, s.content, s.topic, s.transactional)
                                          for s in params.steps]))
        return done

    @activity.defn
    async def sweep_deliveries(self, params: SweepInput) -> SweepResult:
        """Sweep due plans batch by batch for about `window_seconds`, polling every `poll_seconds` while idle;
        returns early when the worker shuts down. Everything it acts on is in Postgres, so a sweep that dies
        leaves nothing to recover but its lease (store/channels/records.py)."""
        done = SweepResult()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.window_seconds
        if activity.is_worker_shutdown():  # a stopping worker can still be handed a task: it starts nothing
            return done
        await self._prune()
        async with heartbeating(lambda: asdict(done)):
            while True:
                progress = await self.service.sweep(limit=params.batch_size)
                if progress.claimed or progress.done or progress.suppressed or progress.deferred:
                    done.add(progress)
                left = deadline - loop.time()
                if left <= 0 or activity.is_worker_shutdown():
                    return done
                if progress.claimed + progress.done + progress.deferred + progress.suppressed < params.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(activity.wait_for_worker_shutdown(), min(params.poll_seconds, left))
                    if activity.is_worker_shutdown():  # woken by the shutdown: no sweep after it
                        return done

    async def _prune(self) -> None:
        now = datetime.now(UTC)
        async with transaction(self.sessions) as s:
            await webhooks.prune(s, now, self.tolerance)
            await caps.prune(s, self.service.policy.caps, now)
