"""Reconciliation (仲裁): start a run on demand and read its result; the findings it files and their resolution."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, Session, Temporal
from api.ledger import runs
from api.params import Id
from api.schemas.ledger import FindingOut, FindingPage, ReconciliationIn, ReconciliationOut, ResolveIn
from domain.errors import DomainError
from domain.ledger.operations import FindingClass
from store.ledger import reconcile
from workflows.ledger.operations import ReconcileInput, ReconciliationWorkflow, ensure_schedules

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
RUN_PREFIX = "ledger-reconcile"


@router.post("/reconciliations", response_model=ReconciliationOut, status_code=202, dependencies=[Admin],
             summary="Reconcile now (it also runs hourly): check balances, postings, programs, void timed-out holds")
async def start_reconciliation(body: ReconciliationIn, client: Temporal) -> ReconciliationOut:
    await ensure_schedules(client)
    workflow_id = await runs.start(
        client, ReconciliationWorkflow.run, ReconcileInput(programs=body.program_ids), prefix=RUN_PREFIX,
        label="reconciliation", summary="Ledger reconciliation (on demand)", what="reconciliation")
    return ReconciliationOut(workflow_id=workflow_id, status="RUNNING")


@router.get("/reconciliations/{workflow_id}", response_model=ReconciliationOut, dependencies=[Reader],
            summary="A reconciliation run: its status and, once completed, what it checked, found and fixed")
async def get_reconciliation(workflow_id: str, client: Temporal) -> ReconciliationOut:
    status, totals = await runs.outcome(client, ReconciliationWorkflow.run, workflow_id, prefix=RUN_PREFIX,
                                        what="reconciliation run")
    return ReconciliationOut(workflow_id=workflow_id, status=status, totals=totals)


def finding_out(f: reconcile.Finding) -> FindingOut:
    return FindingOut(id=f.id, program_id=f.program_id, contact_id=f.contact_id, finding_class=f.class_,
                      subject=f.subject, detail=f.detail, status=f.status, fix=f.fix,  # type: ignore[arg-type]
                      fixed_by=f.fixed_by, note=f.note, created_at=f.created_at, resolved_at=f.resolved_at)


@router.get("/findings", response_model=FindingPage, dependencies=[Reader],
            summary="Reconciliation findings, newest first: `status=open` is the review queue")
async def list_findings(
    session: Session, status: Literal["open", "fixed", "resolved"] | None = None,
    finding_class: Annotated[FindingClass | None, Query(description="The findings' `finding_class`.")] = None,
    class_: Annotated[FindingClass | None, Query(alias="class", deprecated=True,
                                                 description="Old name of `finding_class`.")] = None,
    program_id: Id | None = None, before: Id | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FindingPage:
    if finding_class and class_ and finding_class != class_:
        raise DomainError("pass `finding_class` only (`class` is its deprecated old name), not both with different "
                          "values")
    wanted = finding_class or class_
    found = await reconcile.list_findings(session, status=status, class_=wanted.value if wanted else None,
                                          program_id=program_id, before=before, limit=limit)
    return FindingPage(findings=[finding_out(f) for f in found],
                       next_before=found[-1].id if len(found) == limit else None)


@router.post("/findings/{finding_id}/resolve", response_model=FindingOut, dependencies=[Admin],
             summary="Close an open finding with a note (409 if it is not open)")
async def resolve_finding(finding_id: Id, body: ResolveIn, session: Session) -> FindingOut:
    return finding_out(await reconcile.resolve_finding(session, finding_id, body.note))
