"""The incremental segment consumer: new events and trait changes re-evaluate the contacts they touched.

`SegmentChangesConsumerWorkflow` is one long-lived workflow per deployment (id `segments-changes`, started at
start-up by `workflows.segments.refresh.ensure_schedules`). Each step is one `follow_changes` activity that
consumes batches as they come for a few minutes, polling every second while idle (Temporal's pattern for
frequent polling): idle time adds no history, a step adds six events, and the run continues as new about
once a day, so the Temporal UI lists one row for it instead of a workflow every five seconds.

When the consumer finds an Elasticsearch index that is not filled, it starts the index's backfill
(`workflows/segments/backfill.py`) as an abandoned child: one per index, however often it is asked.

`SegmentChangesWorkflow` is the one-shot consumer the retired 5-second Schedule started (drain until caught
up, then end). Nothing starts it any more; it stays registered so a run an older release left in flight
finishes after an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.segments import ConsumeInput, ConsumeResult, FollowInput, FollowResult, SegmentActivities
    from workflows.schedules import kind
    from workflows.segments.backfill import BackfillInput, SegmentIndexBackfillWorkflow, backfill_workflow_id

TASK_QUEUE = "nudge-segments"
CONSUMER_ID = "segments-changes"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
HEARTBEAT = timedelta(seconds=30)  # a worker that dies mid-step is replaced this soon
SLOWEST_BATCH = timedelta(minutes=10)  # a step may overrun its window by its last batch
MAX_BATCHES = 50  # per run of the one-shot consumer


@dataclass
class ConsumerInput:
    batch_size: int = 1000
    poll_seconds: float = 1.0      # how soon an idle consumer sees a change
    window_seconds: float = 300.0  # one activity's span: the history records totals this often
    steps: int = 288               # per workflow run (about a day), then continue-as-new


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


async def start_backfill(index: str) -> str:
    try:
        await workflow.start_child_workflow(
            SegmentIndexBackfillWorkflow.run, BackfillInput(index), id=backfill_workflow_id(index),
            parent_close_policy=ParentClosePolicy.ABANDON, search_attributes=kind("segment-backfill"),
            static_summary=f"Fill Elasticsearch index {index}")
    except WorkflowAlreadyStartedError:
        pass  # a backfill is running; it finishes what it started
    return index


@workflow.defn
class SegmentChangesConsumerWorkflow:
    @workflow.init
    def __init__(self, params: ConsumerInput) -> None:
        self.totals = ChangesTotals()  # of this run; each run's history holds its own

    @workflow.run
    async def run(self, params: ConsumerInput) -> None:
        t = self.totals
        for _ in range(params.steps):
            done: FollowResult = await workflow.execute_activity_method(
                SegmentActivities.follow_changes,
                FollowInput(params.batch_size, params.poll_seconds, params.window_seconds, t.backfill),
                start_to_close_timeout=timedelta(seconds=params.window_seconds) + SLOWEST_BATCH,
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
            )
            t.batches, t.events, t.contacts = t.batches + done.batches, t.events + done.events, \
                t.contacts + done.contacts
            t.entered, t.exited = t.entered + done.entered, t.exited + done.exited
            if done.backfill:
                t.backfill = await start_backfill(done.backfill)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    @workflow.query
    def progress(self) -> ChangesTotals:
        return self.totals


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
                t.backfill = await start_backfill(batch.backfill)
            if not batch.more:
                break
        return t

    @workflow.query
    def progress(self) -> ChangesTotals:
        return self.totals
