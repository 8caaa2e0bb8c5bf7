"""Interval schedules shared by every domain: created idempotently from any process at start-up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)


@dataclass(frozen=True)
class IntervalPlan:
    schedule_id: str
    workflow: Any  # the workflow's run method
    arg: Any
    every: timedelta
    task_queue: str


async def ensure_interval_schedules(client: Client, plans: Iterable[IntervalPlan]) -> None:
    """Create each schedule unless it exists; a run still busy when the next is due is skipped."""
    for plan in plans:
        try:
            await client.create_schedule(plan.schedule_id, Schedule(
                action=ScheduleActionStartWorkflow(plan.workflow, plan.arg, id=f"{plan.schedule_id}-run",
                                                   task_queue=plan.task_queue),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=plan.every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ))
        except ScheduleAlreadyRunningError:
            pass
