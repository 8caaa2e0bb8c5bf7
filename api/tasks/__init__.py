"""Incentive tasks over HTTP: the rule table (create, edit while draft, list), the lifecycle (approve, activate,
pause, end), manual claims, grants, and the contact-facing task centre."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Admin, Reader, Session, Temporal
from api.params import Cursor, Id
from api.schemas.tasks import ClaimIn, GrantOut, TaskCentreItem, TaskCentreOut, TaskIn, TaskOut
from domain.tasks.definitions import to_mapping
from domain.tasks.lifecycle import TaskStatus
from store.tasks import definitions, grants
from store.tasks.centre import task_centre
from store.tasks.definitions import Task
from workflows.schedules import kind
from workflows.tasks.issuance import task_attribute
from workflows.tasks.lifecycle import TASK_QUEUE, LifecycleInput, TaskLifecycleWorkflow, workflow_id

router = APIRouter(tags=["tasks"])

Status = Literal["draft", "approved", "active", "paused", "ended"]
GrantStatusName = Literal["claimable", "pending", "issuing", "issued", "held", "lapsed", "failed"]


def _out(task: Task) -> TaskOut:
    return TaskOut(id=task.id, status=task.status.value, version=task.version, reserved=task.reserved,
                   budget_left=task.budget_left, alert=task.alert, definition=to_mapping(task.definition),
                   created_at=task.created_at, updated_at=task.updated_at, activated_at=task.activated_at,
                   ended_at=task.ended_at, workflow_id=workflow_id(task.id))


def _body(body: TaskIn) -> dict[str, Any]:
    return body.model_dump(mode="json")


@router.post("/v1/tasks", response_model=TaskOut, status_code=201, dependencies=[Admin],
             summary="Create a task (draft): behaviour → progress → reward")
async def create_task(body: TaskIn, session: Session) -> TaskOut:
    return _out(await definitions.create_task(session, _body(body)))


@router.get("/v1/tasks", response_model=list[TaskOut], dependencies=[Reader], summary="List tasks")
async def list_tasks(session: Session, status: Annotated[Status | None, Query()] = None,
                     after: Annotated[Cursor, Query(description="Tasks with an id greater than this.")] = 0,
                     limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[TaskOut]:
    return [_out(t) for t in await definitions.list_tasks(session, status=status, after=after, limit=limit)]


@router.get("/v1/tasks/{task_id}", response_model=TaskOut, dependencies=[Reader], summary="Get a task")
async def get_task(task_id: Id, session: Session) -> TaskOut:
    return _out(await definitions.get_task(session, task_id))


@router.put("/v1/tasks/{task_id}", response_model=TaskOut, dependencies=[Admin],
            summary="Replace a draft task's definition")
async def update_task(task_id: Id, body: TaskIn, session: Session) -> TaskOut:
    return _out(await definitions.update_task(session, task_id, _body(body)))


async def _lifecycle(client: Client, task: Task) -> None:
    """Start the task's lifecycle workflow (once; a running one is asked to look again)."""
    try:
        await client.start_workflow(
            TaskLifecycleWorkflow.run, LifecycleInput(task.id), id=workflow_id(task.id), task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=kind("task", task_attribute(task.id)),
            static_summary=f"Task #{task.id}: {task.definition.name}"[:200])
        await client.get_workflow_handle(workflow_id(task.id)).signal(TaskLifecycleWorkflow.refresh)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return
        raise HTTPException(503, f"Temporal refused to start the task's lifecycle: {exc.message}. "
                                 "Check the worker and server.") from exc


async def _move(session: Session, client: Client, task_id: int, target: TaskStatus) -> TaskOut:
    task = await definitions.set_status(session, task_id, target, now=datetime.now(UTC))
    await session.commit()  # the workflow reads the new status
    if target is not TaskStatus.DRAFT:
        await _lifecycle(client, task)
    return _out(task)


@router.post("/v1/tasks/{task_id}/approve", response_model=TaskOut, dependencies=[Admin],
             summary="Approve a draft task: it becomes active at its start time (at once without one)")
async def approve_task(task_id: Id, session: Session, client: Temporal) -> TaskOut:
    return await _move(session, client, task_id, TaskStatus.APPROVED)


@router.post("/v1/tasks/{task_id}/activate", response_model=TaskOut, dependencies=[Admin],
             summary="Activate an approved task now, or resume a paused one")
async def activate_task(task_id: Id, session: Session, client: Temporal) -> TaskOut:
    return await _move(session, client, task_id, TaskStatus.ACTIVE)


@router.post("/v1/tasks/{task_id}/pause", response_model=TaskOut, dependencies=[Admin], summary="Pause a task")
async def pause_task(task_id: Id, session: Session, client: Temporal) -> TaskOut:
    return await _move(session, client, task_id, TaskStatus.PAUSED)


@router.post("/v1/tasks/{task_id}/end", response_model=TaskOut, dependencies=[Admin],
             summary="End a task for good (rewards already earned are still issued)")
async def end_task(task_id: Id, session: Session, client: Temporal) -> TaskOut:
    return await _move(session, client, task_id, TaskStatus.ENDED)


@router.post("/v1/tasks/{task_id}/claim", response_model=list[GrantOut], dependencies=[Admin],
             summary="Claim a contact's rewards of a manual-claim task (inside the claim window)",
             responses={409: {"description": "Nothing to claim, already claimed, or the claim window closed."}})
async def claim(task_id: Id, body: ClaimIn, session: Session) -> list[GrantOut]:
    await definitions.get_task(session, task_id)
    claimed = await grants.claim(session, task_id, body.contact_id, now=datetime.now(UTC))
    return [GrantOut.model_validate(g) for g in claimed]


@router.get("/v1/tasks/{task_id}/grants", response_model=list[GrantOut], dependencies=[Reader],
            summary="A task's reward grants")
async def list_grants(task_id: Id, session: Session, status: Annotated[GrantStatusName | None, Query()] = None,
                      contact_id: Annotated[Id | None, Query()] = None,
                      after: Annotated[Cursor, Query(description="Grants with an id greater than this.")] = 0,
                      limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[GrantOut]:
    await definitions.get_task(session, task_id)
    found = await grants.list_grants(session, task_id=task_id, contact_id=contact_id, status=status, after=after,
                                     limit=limit)
    return [GrantOut.model_validate(g) for g in found]


@router.get("/v1/contacts/{contact_id}/tasks", response_model=TaskCentreOut, dependencies=[Reader],
            summary="Task centre: the tasks a contact can do, progress, rewards to claim and time left")
async def contact_tasks(contact_id: Id, session: Session) -> TaskCentreOut:
    survivor, items = await task_centre(session, contact_id, now=datetime.now(UTC))
    return TaskCentreOut(contact_id=survivor, tasks=[TaskCentreItem(
        task_id=i.task.id, name=i.task.definition.name, description=i.task.definition.description,
        kind=i.task.definition.kind.value, period_key=i.period_key, period_ends_at=i.period_ends_at,
        progress=i.progress, num=i.task.definition.num, completions=i.completions,
        threshold=i.task.definition.threshold, status=i.status, reward_count=i.task.definition.reward_count,
        time_left_seconds=i.time_left_seconds, rewards=[GrantOut.model_validate(g) for g in i.rewards])
        for i in items])
