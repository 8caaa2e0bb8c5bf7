"""Segment workflows, each run by a Temporal Schedule: periodic refresh of time-based rule segments
("inactive 14 days" changes with the clock alone), and the incremental consumer that drains new events
and trait changes in batches. Both are short runs; the schedules skip a run while the last one is busy.
When the consumer reports an Elasticsearch index that is not filled, it starts the index's backfill
(`workflows/segments/backfill.py`) as an abandoned child: one per index, however many runs ask for it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.segments import ConsumeInput, ConsumeResult, RefreshInput, RefreshResult, SegmentActivities
    from workflows.schedules import IntervalPlan, ensure_interval_schedules
    from workflows.segments.backfill import BackfillInput, SegmentIndexBackfillWorkflow, backfill_workflow_id

TASK_QUEUE = "nudge-segments"
REFRESH_SCHEDULE = "segments-refresh"
CHANGES_SCHEDULE = "segments-changes"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
MAX_BATCHES = 50  # per run; the next scheduled run continues


@dataclass
class ChangesInput:
    batch_size: int = 1000


@dataclass
class ChangesTotals:
    batches: int = 0
    events: int = 0
    contacts: int = 0
    entered: int = 0
    exited: int = 0
    backfill: str | None = None  # the index whose backfill this run started (or found running)


@workflow.defn
class SegmentRefreshWorkflow:
    @workflow.run
    async def run(self, params: RefreshInput) -> RefreshResult:
        return await workflow.execute_activity_method(
            SegmentActivities.refresh_segments, params,
            start_to_close_timeout=timedelta(minutes=30), retry_policy=RETRY,
        )


@workflow.defn
class SegmentChangesWorkflow:
    @workflow.init
    def __init__(self, params: ChangesInput) -> None:
        self.totals = ChangesTotals()

    @workflow.run
    async def run(self, params: ChangesInput) -> ChangesTotals:
        t = self.totals
        for _ in range(MAX_BATCHES):
            batch: ConsumeResult = await workflow.execute_activity_method(
                SegmentActivities.consume_changes, ConsumeInput(params.batch_size),
                start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY,
            )
            t.batches, t.events, t.contacts = t.batches + 1, t.events + batch.events, t.contacts + batch.contacts
            t.entered, t.exited = t.entered + batch.entered, t.exited + batch.exited
            if batch.backfill and t.backfill is None:
                t.backfill = await self._start_backfill(batch.backfill)
            if not batch.more:
                break
        return t

    @workflow.query
    def progress(self) -> ChangesTotals:
        return self.totals

    async def _start_backfill(self, index: str) -> str:
        try:
            await workflow.start_child_workflow(
                SegmentIndexBackfillWorkflow.run, BackfillInput(index), id=backfill_workflow_id(index),
                parent_close_policy=ParentClosePolicy.ABANDON, static_summary=f"Fill Elasticsearch index {index}")
        except WorkflowAlreadyStartedError:
            pass  # a backfill is running; it finishes what it started
        return index


async def ensure_schedules(client: Client, *, refresh_every: timedelta = timedelta(minutes=15),
                           changes_every: timedelta = timedelta(seconds=5)) -> None:
    """Create both schedules if they do not exist yet (idempotent; safe from every process)."""
    plans = (
        (REFRESH_SCHEDULE, SegmentRefreshWorkflow.run, RefreshInput(time_based_only=True), refresh_every),
        (CHANGES_SCHEDULE, SegmentChangesWorkflow.run, ChangesInput(), changes_every),
    )
    await ensure_interval_schedules(client, (IntervalPlan(sid, run, arg, every, TASK_QUEUE)
                                             for sid, run, arg, every in plans))
