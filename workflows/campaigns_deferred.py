"""CampaignsDeferredWorkflow: every ten minutes (a Schedule), campaign deliveries a batch left `deferred` — quiet hours,
a receipt window, a retry — are settled again once the delivery service's sweeper has moved their plans on, so a
campaign's sent and failed counts follow its later sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from activities.campaigns import CampaignActivities
    from workflows.campaigns import TASK_QUEUE
    from workflows.schedules import SCHEDULED_RETRY, IntervalPlan, ensure_interval_schedules

SCHEDULE = "campaigns-deferred"


@dataclass
class DeferredInput:
    pass


@workflow.defn
class CampaignsDeferredWorkflow:
    @workflow.run
    async def run(self, params: DeferredInput) -> int:
        return await workflow.execute_activity_method(CampaignActivities.settle_deferred,
                                                      start_to_close_timeout=timedelta(minutes=5),
                                                      heartbeat_timeout=timedelta(minutes=1),
                                                      retry_policy=SCHEDULED_RETRY)


async def ensure_schedules(client: Client, *, every: timedelta = timedelta(minutes=10)) -> None:
    await ensure_interval_schedules(client, [IntervalPlan(
        SCHEDULE, CampaignsDeferredWorkflow.run, DeferredInput(), every, TASK_QUEUE, kind="campaigns-deferred",
        summary="Settle campaign deliveries left deferred once the delivery service has sent or ended them")])
