"""PromotionsSweepWorkflow: every few minutes (a Schedule), issued coupons past their validity expire and any
reservation whose holder vanished is released — the safety net under OrderWorkflow, so stock never leaks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.client import Client

with workflow.unsafe.imports_passed_through():
    from activities.promotions.orders import OrderActivities
    from workflows.promotions.orders import TASK_QUEUE
    from workflows.schedules import SCHEDULED_RETRY, IntervalPlan, ensure_interval_schedules

SCHEDULE = "promotions-sweep"


@dataclass
class SweepInput:
    pass


@dataclass
class SweepResult:
    coupons_expired: int
    units_released: int


@workflow.defn
class PromotionsSweepWorkflow:
    @workflow.run
    async def run(self, params: SweepInput) -> SweepResult:
        expired = await workflow.execute_activity_method(OrderActivities.expire_coupons,
                                                         start_to_close_timeout=timedelta(minutes=2),
                                                         retry_policy=SCHEDULED_RETRY)
        released = await workflow.execute_activity_method(OrderActivities.sweep_reservations,
                                                          start_to_close_timeout=timedelta(minutes=2),
                                                          retry_policy=SCHEDULED_RETRY)
        return SweepResult(expired, released)


async def ensure_schedules(client: Client, *, every: timedelta = timedelta(minutes=5)) -> None:
    await ensure_interval_schedules(client, [IntervalPlan(
        SCHEDULE, PromotionsSweepWorkflow.run, SweepInput(), every, TASK_QUEUE, kind="promotions-sweep",
        summary="Expire coupons past their validity; release reservations whose order vanished")])
