"""The task progress engine and the reward dispatcher: two long-lived workflows per deployment.

`TaskProgressConsumer` (id `tasks-progress`) runs one `follow_progress` activity for minutes at a time: batches of
committed events from the ingest outbox → progress → grants, each batch one transaction with the cursor
(store/tasks/progress.py). `RewardDispatcherWorkflow` (id `tasks-rewards`) waits for pending grants, cuts them
into batches and starts a `RewardIssuanceWorkflow` per batch (abandoned child; its id comes from the grants, so
starting it twice is a no-op). Both continue as new when Temporal suggests it: one row each in the Temporal UI.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from activities.tasks.progress import BatchRef, DispatchInput, FollowInput, FollowResult, TaskActivities
    from workflows.schedules import LongLivedPlan, ensure_long_lived, kind
    from workflows.tasks.issuance import IssuanceInput, RewardIssuanceWorkflow, task_attribute

TASK_QUEUE = "nudge-tasks"
CONSUMER_ID = "tasks-progress"
DISPATCHER_ID = "tasks-rewards"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
HEARTBEAT = timedelta(seconds=30)
SLOWEST_BATCH = timedelta(minutes=10)


@dataclass
class ConsumerInput:
    batch_size: int = 5000  # events per transaction: fixed costs (statements, commit) amortised
    poll_seconds: float = 1.0
    window_seconds: float = 300.0
    steps: int = 288  # per run (about a day), then continue-as-new


@dataclass
class ConsumerTotals:
    batches: int = 0
    events: int = 0
    matched: int = 0
    rewards: int = 0


@workflow.defn
class TaskProgressConsumer:
    @workflow.init
    def __init__(self, params: ConsumerInput) -> None:
        self.totals = ConsumerTotals()

    @workflow.run
    async def run(self, params: ConsumerInput) -> None:
        t = self.totals
        for _ in range(params.steps):
            done: FollowResult = await workflow.execute_activity_method(
                TaskActivities.follow_progress, FollowInput(params.batch_size, params.poll_seconds,
                                                            params.window_seconds),
                start_to_close_timeout=timedelta(seconds=params.window_seconds) + SLOWEST_BATCH,
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY)
            t.batches, t.events = t.batches + done.batches, t.events + done.events
            t.matched, t.rewards = t.matched + done.matched, t.rewards + done.rewards
            for task_id in done.paused:
                workflow.logger.warning("task %s paused automatically: its budget is exhausted", task_id)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    @workflow.query
    def progress(self) -> ConsumerTotals:
        return self.totals


@dataclass
class DispatcherInput:
    batch_size: int = 200
    max_batches: int = 20
    poll_seconds: float = 1.0
    window_seconds: float = 60.0
    rounds: int = 1000


@workflow.defn
class RewardDispatcherWorkflow:
    @workflow.init
    def __init__(self, params: DispatcherInput) -> None:
        self.started = 0

    @workflow.run
    async def run(self, params: DispatcherInput) -> None:
        for _ in range(params.rounds):
            batches: list[BatchRef] = await workflow.execute_activity_method(
                TaskActivities.claim_grant_batches,
                DispatchInput(params.batch_size, params.max_batches, params.poll_seconds, params.window_seconds),
                start_to_close_timeout=timedelta(seconds=params.window_seconds) + SLOWEST_BATCH,
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY)
            for b in batches:
                await start_issuance(b)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    @workflow.query
    def batches_started(self) -> int:
        return self.started


async def start_issuance(b: BatchRef) -> None:
    more = [task_attribute(b.task_id)] if b.task_id is not None else []
    try:
        await workflow.start_child_workflow(
            RewardIssuanceWorkflow.run, IssuanceInput(b.workflow_id, b.size), id=b.workflow_id,
            parent_close_policy=ParentClosePolicy.ABANDON, search_attributes=kind("reward-issuance", *more),
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"Issue {b.size} reward(s): grants {b.first}–{b.last}"
                           + (f" of task {b.task_id}" if b.task_id is not None else ""))
    except WorkflowAlreadyStartedError:
        pass  # that batch runs (or ran) already: its grants' statuses say how far it got


def plans(consumer: ConsumerInput | None = None, dispatcher: DispatcherInput | None = None) -> list[LongLivedPlan]:
    return [
        LongLivedPlan(CONSUMER_ID, TaskProgressConsumer.run, consumer or ConsumerInput(), TASK_QUEUE, "task-progress",
                      "Advance incentive task progress from new events"),
        LongLivedPlan(DISPATCHER_ID, RewardDispatcherWorkflow.run, dispatcher or DispatcherInput(), TASK_QUEUE,
                      "reward-dispatch", "Start reward issuance for new task rewards, in batches"),
    ]


async def ensure_workflows(client: Client) -> None:
    """Start the progress consumer and the reward dispatcher unless they run (any process may call this)."""
    await ensure_long_lived(client, plans())
