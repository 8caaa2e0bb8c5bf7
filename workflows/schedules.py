"""How every domain's background work starts: created idempotently from any process at start-up, and labelled
for the Temporal UI with a `NudgeKind` search attribute and a summary.

Two shapes. A consumer that runs every few seconds is one long-lived workflow per deployment
(`LongLivedPlan`: a fixed workflow id, started unless already running, continuing as new now and then), so
the UI lists one row for it, not thousands a day. Work due a few times a day is a Schedule (`IntervalPlan`).
"""

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
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import (
    RetryPolicy,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.service import RPCError, RPCStatusCode

NUDGE_KIND = SearchAttributeKey.for_keyword("NudgeKind")
# The activities of a scheduled housekeeping run: a few tries, then the Schedule's next run takes up what is left.
SCHEDULED_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1),
                              maximum_attempts=5)


def kind(value: str, *more: SearchAttributePair[Any]) -> TypedSearchAttributes:
    """The search attributes of a workflow of this kind (`NudgeKind = "campaign"` in the UI's list query), plus
    any more it is found by (`CampaignId`). Every workflow Nudge starts is labelled through here."""
    return TypedSearchAttributes([SearchAttributePair(NUDGE_KIND, value), *more])


@dataclass(frozen=True)
class IntervalPlan:
    schedule_id: str
    workflow: Any  # the workflow's run method
    arg: Any
    every: timedelta
    task_queue: str
    kind: str     # NudgeKind of every run
    summary: str  # what a run does, in the UI's list


@dataclass(frozen=True)
class LongLivedPlan:
    workflow_id: str  # fixed: one per deployment
    workflow: Any     # the workflow's run method
    arg: Any
    task_queue: str
    kind: str
    summary: str


def _action(plan: IntervalPlan) -> ScheduleActionStartWorkflow:
    return ScheduleActionStartWorkflow(plan.workflow, plan.arg, id=f"{plan.schedule_id}-run",
                                       task_queue=plan.task_queue, typed_search_attributes=kind(plan.kind),
                                       static_summary=plan.summary)


async def ensure_interval_schedules(client: Client, plans: Iterable[IntervalPlan]) -> None:
    """Create each schedule unless it exists; a run still busy when the next is due is skipped. A schedule an
    older release created without the labels gets them (its spec and state are left as they are)."""
    for plan in plans:
        try:
            await client.create_schedule(plan.schedule_id, Schedule(
                action=_action(plan),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=plan.every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ))
        except ScheduleAlreadyRunningError:
            await _label(client, plan)


async def _label(client: Client, plan: IntervalPlan) -> None:
    def relabel(current: ScheduleUpdateInput) -> ScheduleUpdate | None:
        schedule = current.description.schedule
        action = schedule.action
        labelled = isinstance(action, ScheduleActionStartWorkflow) and \
            action.typed_search_attributes.get(NUDGE_KIND) == plan.kind
        if labelled:
            return None
        schedule.action = _action(plan)
        return ScheduleUpdate(schedule)

    await client.get_schedule_handle(plan.schedule_id).update(relabel)


async def ensure_long_lived(client: Client, plans: Iterable[LongLivedPlan]) -> None:
    """Start each workflow unless it is running (any number of processes may ask at once: one runs). One that
    ended (terminated by hand, say) is started again."""
    for plan in plans:
        await client.start_workflow(
            plan.workflow, plan.arg, id=plan.workflow_id, task_queue=plan.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=kind(plan.kind), static_summary=plan.summary,
        )


async def delete_schedules(client: Client, schedule_ids: Iterable[str]) -> None:
    """Delete schedules a long-lived workflow replaced, so an upgraded deployment does not run both."""
    for schedule_id in schedule_ids:
        try:
            await client.get_schedule_handle(schedule_id).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
