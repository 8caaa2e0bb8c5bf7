"""Event pipeline operations, on a daily Temporal Schedule: EventsPruneWorkflow deletes outbox rows every
consumer has read, erased contacts' message ids past the dedupe window and old segment transitions, in bounded
chunks (one short transaction each), oldest first. What counts as old is in store/events/prune.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.events import TABLES, EventsOpsActivities, PruneChunk
    from workflows.schedules import IntervalPlan, ensure_interval_schedules

TASK_QUEUE = "nudge-events"
PRUNE_SCHEDULE = "events-prune"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))


@dataclass
class PruneTotals:
    outbox: int = 0
    dedupe: int = 0
    transitions: int = 0
    chunks: int = 0


@dataclass
class PruneInput:
    now: datetime | None = None  # None: the workflow's clock
    chunk: int = 10_000
    # Where a run that continued as new picks up.
    tables: list[str] = field(default_factory=lambda: list(TABLES))
    totals: PruneTotals = field(default_factory=PruneTotals)


@workflow.defn
class EventsPruneWorkflow:
    @workflow.init
    def __init__(self, params: PruneInput) -> None:
        self.totals = params.totals

    @workflow.run
    async def run(self, params: PruneInput) -> PruneTotals:
        now = params.now or workflow.now()
        t = self.totals
        for i, table in enumerate(params.tables):
            while True:
                deleted: int = await workflow.execute_activity_method(
                    EventsOpsActivities.prune_chunk, PruneChunk(table, now, params.chunk),
                    start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY)
                setattr(t, table, getattr(t, table) + deleted)
                t.chunks += 1
                if deleted < params.chunk:
                    break
                if workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(PruneInput(now, params.chunk, params.tables[i:], t))
        return t

    @workflow.query
    def progress(self) -> PruneTotals:
        return self.totals


async def ensure_schedules(client: Client, *, prune_every: timedelta = timedelta(days=1)) -> None:
    """Create the daily prune schedule if it does not exist yet (idempotent; safe from every process)."""
    await ensure_interval_schedules(client, [IntervalPlan(
        PRUNE_SCHEDULE, EventsPruneWorkflow.run, PruneInput(), prune_every, TASK_QUEUE, kind="events-prune",
        summary="Prune read outbox rows, expired dedupe ids and old segment transitions")])
