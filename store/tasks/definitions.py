"""Task definitions in Postgres: create, edit while draft, list, and move through the lifecycle.

The definition is stored as validated JSON together with the columns the progress engine selects on (status,
the event names, the budget); every edit or transition bumps `version`, which keys the engine's compiled cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.tasks.definitions import InvalidTask, RewardType, TaskDefinition, from_mapping, to_mapping
from domain.tasks.lifecycle import EDITABLE, TaskStatus, transition
from store.ledger.programs import get_program
from store.promotions.promotions import get_template


@dataclass(frozen=True)
class Task:
    id: int
    status: TaskStatus
    version: int
    definition: TaskDefinition
    reserved: int
    alert: str | None
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None

    @property
    def budget_left(self) -> int | None:
        b = self.definition.budget
        return None if b is None else b - self.reserved


COLUMNS = "id, status, version, definition, reserved, alert, created_at, updated_at, activated_at, ended_at"


def task_of(row: Any) -> Task:
    m = row._mapping
    return Task(id=m["id"], status=TaskStatus(m["status"]), version=m["version"],
                definition=from_mapping(m["definition"]), reserved=m["reserved"], alert=m["alert"],
                created_at=m["created_at"], updated_at=m["updated_at"], activated_at=m["activated_at"],
                ended_at=m["ended_at"])


async def _check_reward(session: AsyncSession, definition: TaskDefinition) -> None:
    """The reward exists: the points program, or the coupon template — which must also be active (404 / 422
    naming the field)."""
    if definition.reward_type is RewardType.POINTS:
        assert definition.program_id is not None  # validated
        await get_program(session, definition.program_id)
        return
    assert definition.coupon_template_id is not None  # validated
    try:
        template = await get_template(session, definition.coupon_template_id)
    except NotFound as exc:
        raise NotFound(f"coupon_template_id: {exc}") from exc
    if template.status != "active":
        raise InvalidTask(f"coupon_template_id: coupon template {template.id} is {template.status}, not active")


async def create_task(session: AsyncSession, data: dict[str, Any]) -> Task:
    definition = from_mapping(data)
    await _check_reward(session, definition)
    row = (await session.execute(text(f"""
        INSERT INTO tasks (name, definition, actions, program_id, budget)
        VALUES (:name, CAST(:d AS jsonb), :actions, :program, :budget) RETURNING {COLUMNS}
    """), {"name": definition.name, "d": json.dumps(to_mapping(definition)), "actions": list(definition.actions),
           "program": definition.program_id, "budget": definition.budget})).one()
    return task_of(row)


async def get_task(session: AsyncSession, task_id: int, *, lock: bool = False) -> Task:
    row = (await session.execute(text(f"SELECT {COLUMNS} FROM tasks WHERE id = :id"
                                      + (" FOR UPDATE" if lock else "")), {"id": task_id})).first()
    if row is None:
        raise NotFound(f"task {task_id} does not exist")
    return task_of(row)


async def list_tasks(session: AsyncSession, *, status: str | None, after: int, limit: int) -> list[Task]:
    rows = await session.execute(text(f"""
        SELECT {COLUMNS} FROM tasks WHERE id > :after AND (CAST(:s AS text) IS NULL OR status = :s)
        ORDER BY id LIMIT :limit
    """), {"after": after, "s": status, "limit": limit})
    return [task_of(r) for r in rows]


async def update_task(session: AsyncSession, task_id: int, data: dict[str, Any]) -> Task:
    """Replace the definition of a draft task (an approved one is what was approved: end it and create anew)."""
    task = await get_task(session, task_id, lock=True)
    if task.status not in EDITABLE:
        raise Conflict(f"task {task_id} is {task.status}; only a draft task can be edited")
    definition = from_mapping(data)
    await _check_reward(session, definition)
    row = (await session.execute(text(f"""
        UPDATE tasks SET name = :name, definition = CAST(:d AS jsonb), actions = :actions, program_id = :program,
            budget = :budget, version = version + 1, updated_at = now()
        WHERE id = :id RETURNING {COLUMNS}
    """), {"id": task_id, "name": definition.name, "d": json.dumps(to_mapping(definition)),
           "actions": list(definition.actions), "program": definition.program_id,
           "budget": definition.budget})).one()
    return task_of(row)


async def set_status(session: AsyncSession, task_id: int, target: TaskStatus, *, now: datetime,
                     alert: str | None = None) -> Task:
    """Move a task through its lifecycle (domain rules decide what is allowed); a no-op when already there."""
    task = await get_task(session, task_id, lock=True)
    if task.status == target:
        return task
    transition(task.status, target)
    row = (await session.execute(text(f"""
        UPDATE tasks SET status = :s, version = version + 1, updated_at = now(),
            alert = CASE WHEN :s = 'active' THEN NULL ELSE coalesce(:alert, alert) END,
            activated_at = CASE WHEN :s = 'active' THEN coalesce(activated_at, :now) ELSE activated_at END,
            ended_at = CASE WHEN :s = 'ended' THEN :now ELSE ended_at END
        WHERE id = :id RETURNING {COLUMNS}
    """), {"id": task_id, "s": target.value, "now": now, "alert": alert})).one()
    return task_of(row)


async def active_tasks(session: AsyncSession, actions: list[str]) -> list[tuple[int, int, dict[str, Any]]]:
    """(id, version, definition JSON) of the active tasks listening to any of `actions`."""
    rows = await session.execute(text("""
        SELECT id, version, definition FROM tasks WHERE status = 'active' AND actions && CAST(:a AS text[])
    """), {"a": actions})
    return [(r.id, r.version, r.definition) for r in rows]
