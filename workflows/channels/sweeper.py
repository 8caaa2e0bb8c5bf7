"""The delivery sweeper: one long-lived workflow per deployment (id `deliveries-sweeper`, started at start-up by
`ensure_sweeper`), each step one `sweep_deliveries` activity that moves on, set-based, the plans whose time came —
a receipt window that ended without success, a failure a webhook reported, quiet hours that ended, a retry, a send
whose worker died. The windows cost no workflow and no timer per message: their due times are rows in Postgres
(`delivery_plans.wake_at`), so a restart in between changes nothing. Continues as new about once a day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.channels.sweeper import DeliveryActivities, SweepInput, SweepResult
    from workflows.schedules import LongLivedPlan, ensure_long_lived

TASK_QUEUE = "nudge-channels"
SWEEPER_ID = "deliveries-sweeper"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
HEARTBEAT = timedelta(seconds=30)
SLOWEST_BATCH = timedelta(minutes=10)


@dataclass
class SweeperInput:
    batch_size: int = 500
    poll_seconds: float = 1.0
    window_seconds: float = 300.0
    steps: int = 288  # per run (about a day), then continue-as-new


@workflow.defn
class DeliverySweeperWorkflow:
    @workflow.init
    def __init__(self, params: SweeperInput) -> None:
        self.totals = SweepResult()

    @workflow.run
    async def run(self, params: SweeperInput) -> None:
        t = self.totals
        for _ in range(params.steps):
            done: SweepResult = await workflow.execute_activity_method(
                DeliveryActivities.sweep_deliveries,
                SweepInput(params.batch_size, params.poll_seconds, params.window_seconds),
                start_to_close_timeout=timedelta(seconds=params.window_seconds) + SLOWEST_BATCH,
                heartbeat_timeout=HEARTBEAT, retry_policy=RETRY,
            )
            t.batches, t.sent, t.failed = t.batches + done.batches, t.sent + done.sent, t.failed + done.failed
            t.suppressed, t.deferred, t.done = t.suppressed + done.suppressed, t.deferred + done.deferred, \
                t.done + done.done
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    @workflow.query
    def progress(self) -> SweepResult:
        return self.totals


async def ensure_sweeper(client: Client, params: SweeperInput | None = None) -> None:
    """Start the sweeper unless it runs (idempotent; every worker process may call it)."""
    await ensure_long_lived(client, [LongLivedPlan(
        SWEEPER_ID, DeliverySweeperWorkflow.run, params or SweeperInput(), TASK_QUEUE, "deliveries",
        "Deliveries: fall back when receipt windows end or providers report failure; send what quiet hours held")])

