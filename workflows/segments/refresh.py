"""Keeping rule segments fresh, and how it starts.

Two long-lived workflows per deployment, ensured at start-up (`ensure_schedules`): the changes consumer
(`workflows/segments/changes.py`) and `SegmentRefreshLoopWorkflow`, which re-evaluates time-based rules
("inactive 14 days" changes with the clock alone) every 15 minutes and continues as new about once a day.
As Schedules they were 17,280 and 96 workflows a day in the Temporal UI; now they are a row each.

`SegmentRefreshWorkflow` is one refresh, run once: on demand, and by the retired 15-minute Schedule (kept
registered so a run an older release left in flight finishes after an upgrade).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from activities.segments import RefreshInput, RefreshResult, SegmentActivities
    from workflows.schedules import LongLivedPlan, delete_schedules, ensure_long_lived
    from workflows.segments.changes import CONSUMER_ID, RETRY, TASK_QUEUE, ConsumerInput, SegmentChangesConsumerWorkflow

REFRESH_ID = "segments-refresh"
# The Schedules older releases created; deleted at start-up so an upgraded deployment does not run both.
RETIRED_SCHEDULES = ("segments-changes", "segments-refresh")


@dataclass
class RefreshLoopInput:
    every_seconds: float = 900.0
    time_based_only: bool = True
    refreshes: int = 96  # per workflow run (a day at 15 minutes), then continue-as-new


@workflow.defn
class SegmentRefreshWorkflow:
    @workflow.run
    async def run(self, params: RefreshInput) -> RefreshResult:
        return await workflow.execute_activity_method(
            SegmentActivities.refresh_segments, params,
            start_to_close_timeout=timedelta(minutes=30), retry_policy=RETRY,
        )


@workflow.defn
class SegmentRefreshLoopWorkflow:
    @workflow.init
    def __init__(self, params: RefreshLoopInput) -> None:
        self.last: RefreshResult | None = None

    @workflow.run
    async def run(self, params: RefreshLoopInput) -> None:
        for _ in range(params.refreshes):
            self.last = await workflow.execute_activity_method(
                SegmentActivities.refresh_segments, RefreshInput(time_based_only=params.time_based_only),
                start_to_close_timeout=timedelta(minutes=30), retry_policy=RETRY,
            )
            await workflow.sleep(params.every_seconds)
            if workflow.info().is_continue_as_new_suggested():
                break
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(params)

    @workflow.query
    def last_refresh(self) -> RefreshResult | None:
        return self.last


async def ensure_schedules(client: Client, *, refresh_every: timedelta = timedelta(minutes=15)) -> None:
    """Start the segments' long-lived workflows unless they run, and delete the Schedules they replaced
    (idempotent; safe from every process: the API calls it when a rule segment is created)."""
    await delete_schedules(client, RETIRED_SCHEDULES)
    await ensure_long_lived(client, [
        LongLivedPlan(CONSUMER_ID, SegmentChangesConsumerWorkflow.run, ConsumerInput(), TASK_QUEUE,
                      "segment-changes", "Keep rule segments fresh: follow new events and trait changes"),
        LongLivedPlan(REFRESH_ID, SegmentRefreshLoopWorkflow.run,
                      RefreshLoopInput(every_seconds=refresh_every.total_seconds()), TASK_QUEUE,
                      "segment-refresh",
                      f"Re-evaluate time-based rule segments every {refresh_every.total_seconds() / 60:g} minutes"),
    ])
