"""Ledger operations started on demand (reconciliation, expiry): start one labelled run, read its status and totals."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Any

from fastapi import HTTPException
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import NotFound
from workflows.ledger.operations import TASK_QUEUE
from workflows.schedules import kind


async def start(client: Client, run: Any, arg: Any, *, prefix: str, label: str, summary: str, what: str) -> str:
    """Start `run(arg)` as `{prefix}:{random}`, findable in the Temporal UI by `NudgeKind` and its summary."""
    workflow_id = f"{prefix}:{uuid.uuid4().hex[:12]}"
    try:
        await client.start_workflow(
            run, arg, id=workflow_id, task_queue=TASK_QUEUE, static_summary=summary,
            search_attributes=kind(label))
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the {what}: {exc.message}") from exc
    return workflow_id


async def outcome(client: Client, run: Any, workflow_id: str, *, prefix: str,
                  what: str) -> tuple[str, dict[str, Any] | None]:
    """A run's status and, once it completed, its totals; 404 for an id that is not such a run."""
    if not workflow_id.startswith(prefix):
        raise NotFound(f"{workflow_id!r} is not {'an' if what[0] in 'aeiou' else 'a'} {what}")
    handle = client.get_workflow_handle_for(run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise  # Temporal unreachable: the app's handler answers 503 with Retry-After
        raise NotFound(f"no {what} {workflow_id!r}") from exc
    status = described.status or WorkflowExecutionStatus.RUNNING
    totals = asdict(await handle.result()) if status == WorkflowExecutionStatus.COMPLETED else None
    return status.name, totals
