"""Expiry on demand (it also runs daily): start an ExpiryWorkflow run and read its result."""

from __future__ import annotations

import uuid
from dataclasses import asdict

from fastapi import APIRouter, HTTPException
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from api.deps import Admin, Reader, Temporal
from api.schemas.ledger import ExpiryRunIn, ExpiryRunOut
from domain.errors import NotFound
from workflows.ledger.operations import TASK_QUEUE, ExpiryInput, ExpiryWorkflow

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
NUDGE_KIND = SearchAttributeKey.for_keyword("NudgeKind")
RUN_PREFIX = "ledger-expiry"  # on-demand runs are `ledger-expiry:{id}`; the daily Schedule's `ledger-expiry-{time}`


@router.post("/expiry-runs", response_model=ExpiryRunOut, status_code=202, dependencies=[Admin],
             summary="Expire due points now (it also runs daily): what remains in buckets past their expiry moves "
                     "to each program's expiry account")
async def start_expiry_run(body: ExpiryRunIn, client: Temporal) -> ExpiryRunOut:
    workflow_id = f"{RUN_PREFIX}:{uuid.uuid4().hex[:12]}"
    which = ", ".join(map(str, body.program_ids)) if body.program_ids else None
    try:
        await client.start_workflow(
            ExpiryWorkflow.run, ExpiryInput(programs=body.program_ids), id=workflow_id, task_queue=TASK_QUEUE,
            static_summary=f"Points expiry (on demand): {f'programs {which}' if which else 'all programs'}",
            search_attributes=TypedSearchAttributes([SearchAttributePair(NUDGE_KIND, "expiry")]))
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the expiry run: {exc.message}") from exc
    return ExpiryRunOut(workflow_id=workflow_id, status="RUNNING")


@router.get("/expiry-runs/{workflow_id}", response_model=ExpiryRunOut, dependencies=[Reader],
            summary="An expiry run (on demand or scheduled): its status and, once completed, what it expired")
async def get_expiry_run(workflow_id: str, client: Temporal) -> ExpiryRunOut:
    if not workflow_id.startswith(RUN_PREFIX):
        raise NotFound(f"{workflow_id!r} is not an expiry run")
    handle = client.get_workflow_handle_for(ExpiryWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise  # Temporal unreachable: the app's handler answers 503 with Retry-After
        raise NotFound(f"no expiry run {workflow_id!r}") from exc
    status = described.status or WorkflowExecutionStatus.RUNNING
    totals = asdict(await handle.result()) if status == WorkflowExecutionStatus.COMPLETED else None
    return ExpiryRunOut(workflow_id=workflow_id, status=status.name, totals=totals)
