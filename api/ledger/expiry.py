"""Expiry on demand (it also runs daily): start an ExpiryWorkflow run and read its result."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Admin, Reader, Temporal
from api.ledger import runs
from api.schemas.ledger import ExpiryRunIn, ExpiryRunOut
from workflows.ledger.operations import ExpiryInput, ExpiryWorkflow

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
RUN_PREFIX = "ledger-expiry"  # on-demand runs are `ledger-expiry:{id}`; the daily Schedule's `ledger-expiry-{time}`


@router.post("/expiry-runs", response_model=ExpiryRunOut, status_code=202, dependencies=[Admin],
             summary="Expire due points now (it also runs daily): what remains in buckets past their expiry moves "
                     "to each program's expiry account")
async def start_expiry_run(body: ExpiryRunIn, client: Temporal) -> ExpiryRunOut:
    which = ", ".join(map(str, body.program_ids)) if body.program_ids else None
    workflow_id = await runs.start(
        client, ExpiryWorkflow.run, ExpiryInput(programs=body.program_ids), prefix=RUN_PREFIX, label="expiry",
        summary=f"Points expiry (on demand): {f'programs {which}' if which else 'all programs'}", what="expiry run")
    return ExpiryRunOut(workflow_id=workflow_id, status="RUNNING")


@router.get("/expiry-runs/{workflow_id}", response_model=ExpiryRunOut, dependencies=[Reader],
            summary="An expiry run (on demand or scheduled): its status and, once completed, what it expired")
async def get_expiry_run(workflow_id: str, client: Temporal) -> ExpiryRunOut:
    status, totals = await runs.outcome(client, ExpiryWorkflow.run, workflow_id, prefix=RUN_PREFIX,
                                        what="expiry run")
    return ExpiryRunOut(workflow_id=workflow_id, status=status, totals=totals)
