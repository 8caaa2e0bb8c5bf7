"""CampaignWorkflow: one per campaign run, looping over recipients in batches.

Rule 1 of the design: the workflow never handles a recipient itself; each activity sends a batch.
The history stays small through continue-as-new, carrying the cursor and the running totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from activities.campaigns import CampaignActivities, RunInput, RunTotals, SendBatchInput

TASK_QUEUE = "nudge-campaigns"
CAMPAIGN_ID = SearchAttributeKey.for_keyword("CampaignId")
BATCHES_PER_RUN = 200  # continue-as-new well before the history grows large


@dataclass
class CampaignRunInput:
    campaign_id: int
    run_id: int
    batch_size: int = 500
    after_contact_id: int = 0
    total: int = -1  # -1 until the audience snapshot is taken
    sent: int = 0
    failed: int = 0
    heartbeat_seconds: int = 30  # how soon a batch on a dead worker is retried elsewhere


@dataclass
class CampaignProgress:
    total: int
    sent: int
    failed: int
    paused: bool
    done: bool


SEND_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2,
                         maximum_interval=timedelta(seconds=60), non_retryable_error_types=["TemplateProblem"])


@workflow.defn
class CampaignWorkflow:
    @workflow.init
    def __init__(self, params: CampaignRunInput) -> None:
        self.state = params
        self.paused = False
        self.done = False

    @workflow.run
    async def run(self, params: CampaignRunInput) -> CampaignProgress:
        s = self.state
        if s.total < 0:
            s.total = await workflow.execute_activity_method(
                CampaignActivities.snapshot_audience, RunInput(s.run_id),
                start_to_close_timeout=timedelta(minutes=10), retry_policy=SEND_RETRY,
            )
        for _ in range(BATCHES_PER_RUN):
            await workflow.wait_condition(lambda: not self.paused)
            batch = await workflow.execute_activity_method(
                CampaignActivities.send_batch, SendBatchInput(s.run_id, s.after_contact_id, s.batch_size),
                start_to_close_timeout=timedelta(minutes=10), heartbeat_timeout=timedelta(seconds=s.heartbeat_seconds),
                retry_policy=SEND_RETRY,
            )
            s.after_contact_id, s.sent, s.failed = batch.last_contact_id, s.sent + batch.sent, s.failed + batch.failed
            if batch.done:
                break
        else:
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(s)

        totals: RunTotals = await workflow.execute_activity_method(
            CampaignActivities.finish_run, RunInput(s.run_id),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=SEND_RETRY,
        )
        self.done = True
        s.total, s.sent, s.failed = totals.total, totals.sent, totals.failed
        return self.progress()

    @workflow.signal
    def pause(self) -> None:
        self.paused = True

    @workflow.signal
    def resume(self) -> None:
        self.paused = False

    @workflow.query
    def progress(self) -> CampaignProgress:
        s = self.state
        return CampaignProgress(total=max(s.total, 0), sent=s.sent, failed=s.failed, paused=self.paused, done=self.done)
