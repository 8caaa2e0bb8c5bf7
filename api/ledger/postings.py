"""Points ledger: programs, postings (exactly once per reference), account balances and statements."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError

from api.deps import Admin, Reader, Session, Temporal
from api.schemas.ledger import (
    AccountOut, BucketOut, EntryOut, FindingOut, FindingPage, MonthOut, PostingIn, PostingOut, ProgramIn, ProgramOut,
    ReconciliationIn, ReconciliationOut, ResolveIn, ReviewOut, RiskRuleIn, RiskRuleOut, StatementLineOut, StatementOut,
    BlockIn,
)
from domain.errors import DomainError, NotFound
from domain.ledger.postings import Kind, Request, month_label, parse_month
from domain.ledger.risk import Verdict, refusal
from store.ledger import accounts as store
from store.ledger import risk
from store.ledger.postings import existing
from store.ledger import reconcile
from workflows.ledger.operations import (
    TASK_QUEUE, ReconcileInput, ReconciliationWorkflow, ensure_schedules,
)

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
NUDGE_KIND = SearchAttributeKey.for_keyword("NudgeKind")


@router.post("/programs", response_model=ProgramOut, status_code=201, dependencies=[Admin],
             summary="Create a points program (a currency with its expiry policy)")
async def create_program(body: ProgramIn, session: Session) -> ProgramOut:
    program = await store.create_program(session, name=body.name, unit=body.unit, expiry_months=body.expiry_months,
                                         retention_months=body.retention_months)
    return ProgramOut.model_validate(program)


@router.get("/programs", response_model=list[ProgramOut], dependencies=[Reader], summary="List points programs")
async def list_programs(session: Session) -> list[ProgramOut]:
    return [ProgramOut.model_validate(p) for p in await store.list_programs(session)]


@router.get("/programs/{program_id}", response_model=ProgramOut, dependencies=[Reader], summary="Get a program")
async def get_program(program_id: int, session: Session) -> ProgramOut:
    return ProgramOut.model_validate(await store.get_program(session, program_id))


def posting_out(receipt: store.Receipt) -> PostingOut:
    return PostingOut(
        id=receipt.id, program_id=receipt.program_id, reference=receipt.reference, kind=receipt.kind,
        contact_id=receipt.contact_id, amount=receipt.amount, balance_after=receipt.balance_after,
        entries=[EntryOut(account=a, amount=n) for a, n in receipt.entries], hold_reference=receipt.hold_reference,
        memo=receipt.memo, created_at=receipt.created_at,
    )


@router.post("/postings", response_model=PostingOut, status_code=201, dependencies=[Admin],
             summary="Post points: 201 the first time, 200 with the same body on a replay, 409 if the "
                     "reference was used for something else",
             responses={200: {"description": "A replay: the original receipt"},
                        202: {"model": ReviewOut, "description": "A credit held for review by risk controls"},
                        403: {"description": "Blocklisted"}, 429: {"description": "Velocity limit reached"},
                        409: {"description": "The reference was already used for a different posting"},
                        422: {"description": "Invalid, or not enough points"}})
async def create_posting(body: PostingIn, session: Session, response: Response) -> PostingOut | JSONResponse:
    request = Request(
        reference=body.reference, kind=Kind(body.kind), contact_id=body.contact_id, amount=body.amount,
        earned_month=parse_month(body.earned_month) if body.earned_month else None,
        hold_reference=body.hold_reference, hold_seconds=body.hold_seconds, memo=body.memo,
    )
    now = datetime.now(UTC)
    if request.kind is Kind.CREDIT:
        held = await _screen_credit(session, body, request, now)
        if held is not None:
            return held
    receipt = await store.post(session, body.program_id, request, now=now)
    if receipt.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return posting_out(receipt)


async def _screen_credit(session: Session, body: PostingIn, request: Request, now: datetime) -> JSONResponse | None:
    """Risk controls on a new credit: refused (4xx), held for review (202 and the review), or let through."""
    await store.get_program(session, body.program_id)
    if (body.program_id, request.reference) in await existing(session, [(body.program_id, request.reference)]):
        return None  # a replay (or a conflict): answered by the ledger, not counted again
    review = await risk.find_review(session, body.program_id, request.reference)
    if review is None:
        request.validate()
        verdict, reason = await risk.screen(session, program_id=body.program_id, action="credit",
                                            contact_id=request.contact_id, device=body.device, ip=body.ip,
                                            amount=request.amount, reference=request.reference, now=now)
        if verdict is Verdict.REFUSE:
            raise refusal(reason)
        if verdict is Verdict.ALLOW:
            return None
        review = await risk.hold(session, body.program_id, request, reason)
    if review.status == "released":
        return None
    return JSONResponse(review_out(review).model_dump(mode="json"), status_code=202)


def review_out(review: risk.Review, receipt: store.Receipt | None = None) -> ReviewOut:
    return ReviewOut(**asdict(review), posting=posting_out(receipt) if receipt else None)  # type: ignore[arg-type]


@router.get("/programs/{program_id}/postings/{reference:path}", response_model=PostingOut, dependencies=[Reader],
            summary="Look a posting up by its reference")
async def get_posting(program_id: int, reference: str, session: Session) -> PostingOut:
    return posting_out(await store.receipt(session, program_id, reference))


@router.get("/accounts/{contact_id}", response_model=AccountOut, dependencies=[Reader],
            summary="A contact's balance, what expires soon, and the monthly buckets")
async def get_account(contact_id: int, session: Session,
                      program_id: Annotated[int, Query(description="The points program.")]) -> AccountOut:
    program = await store.get_program(session, program_id)
    view = await store.account(session, program, contact_id, now=datetime.now(UTC))
    return AccountOut(
        program_id=view.program_id, contact_id=view.contact_id, balance=view.balance, held=view.held,
        expiring_soon=view.expiring_soon,
        buckets=[BucketOut(month=month_label(b.month), remaining=b.remaining,
                           expires_end_of=month_label(b.expires_after) if b.expires_after is not None else None)
                 for b in view.buckets],
    )


@router.get("/accounts/{contact_id}/statement", response_model=StatementOut, dependencies=[Reader],
            summary="Recent postings of a contact, newest first, plus rolled-up older months")
async def get_statement(
    contact_id: int, session: Session, program_id: Annotated[int, Query()],
    before: Annotated[int | None, Query(ge=1, description="Return postings older than this posting id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> StatementOut:
    await store.get_program(session, program_id)
    lines, history = await store.statement(session, program_id, contact_id, before=before, limit=limit)
    return StatementOut(
        lines=[StatementLineOut(posting_id=x.posting_id, reference=x.reference, kind=x.kind, amount=x.amount,
                                memo=x.memo, created_at=x.created_at) for x in lines],
        next_before=lines[-1].posting_id if len(lines) == limit else None,
        history=[MonthOut(month=month_label(h.month), credited=h.credited, debited=h.debited) for h in history],
    )


@router.post("/reconciliations", response_model=ReconciliationOut, status_code=202, dependencies=[Admin],
             summary="Reconcile now (it also runs hourly): check balances, postings, programs, void timed-out holds")
async def start_reconciliation(body: ReconciliationIn, client: Temporal) -> ReconciliationOut:
    workflow_id = f"ledger-reconcile:{uuid.uuid4().hex[:12]}"
    try:
        await ensure_schedules(client)
        await client.start_workflow(
            ReconciliationWorkflow.run, ReconcileInput(programs=body.program_ids), id=workflow_id,
            task_queue=TASK_QUEUE, static_summary="Ledger reconciliation (on demand)",
            search_attributes=TypedSearchAttributes([SearchAttributePair(NUDGE_KIND, "reconciliation")]))
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the reconciliation: {exc.message}") from exc
    return ReconciliationOut(workflow_id=workflow_id, status="RUNNING")


@router.get("/reconciliations/{workflow_id}", response_model=ReconciliationOut, dependencies=[Reader],
            summary="A reconciliation run: its status and, once completed, what it checked, found and fixed")
async def get_reconciliation(workflow_id: str, client: Temporal) -> ReconciliationOut:
    if not workflow_id.startswith("ledger-reconcile"):
        raise NotFound(f"{workflow_id!r} is not a reconciliation run")
    handle = client.get_workflow_handle_for(ReconciliationWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
    except RPCError as exc:
        raise NotFound(f"no reconciliation run {workflow_id!r}") from exc
    status = described.status or WorkflowExecutionStatus.RUNNING
    totals = None
    if status == WorkflowExecutionStatus.COMPLETED:
        totals = asdict(await handle.result())
    return ReconciliationOut(workflow_id=workflow_id, status=status.name, totals=totals)


def finding_out(f: reconcile.Finding) -> FindingOut:
    return FindingOut(id=f.id, program_id=f.program_id, contact_id=f.contact_id, finding_class=f.class_,
                      subject=f.subject, detail=f.detail, status=f.status, fix=f.fix,  # type: ignore[arg-type]
                      fixed_by=f.fixed_by, note=f.note, created_at=f.created_at, resolved_at=f.resolved_at)


@router.get("/findings", response_model=FindingPage, dependencies=[Reader],
            summary="Reconciliation findings, newest first: `status=open` is the review queue")
async def list_findings(
    session: Session, status: Literal["open", "fixed", "resolved"] | None = None,
    finding_class: Annotated[str | None, Query(alias="class", max_length=40)] = None,
    program_id: int | None = None, before: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> FindingPage:
    found = await reconcile.list_findings(session, status=status, class_=finding_class, program_id=program_id,
                                          before=before, limit=limit)
    return FindingPage(findings=[finding_out(f) for f in found],
                       next_before=found[-1].id if len(found) == limit else None)


@router.post("/findings/{finding_id}/resolve", response_model=FindingOut, dependencies=[Admin],
             summary="Close an open finding with a note (409 if it is not open)")
async def resolve_finding(finding_id: int, body: ResolveIn, session: Session) -> FindingOut:
    return finding_out(await reconcile.resolve_finding(session, finding_id, body.note))


@router.post("/risk/rules", response_model=RiskRuleOut, status_code=201, dependencies=[Admin],
             summary="Add a velocity limit on credits or redemptions per contact, device or IP")
async def create_risk_rule(body: RiskRuleIn, session: Session) -> RiskRuleOut:
    if body.max_count is None and body.max_amount is None:
        raise DomainError("a rule needs max_count, max_amount or both")
    if body.action == "redeem" and body.verdict == "review":
        raise DomainError("redemptions are refused, not held: use verdict `refuse`")
    await store.get_program(session, body.program_id)
    rule = await risk.create_rule(session, **body.model_dump())
    return RiskRuleOut(**asdict(rule))


@router.get("/risk/rules", response_model=list[RiskRuleOut], dependencies=[Reader], summary="A program's rules")
async def list_risk_rules(session: Session, program_id: int) -> list[RiskRuleOut]:
    return [RiskRuleOut(**asdict(r)) for r in await risk.rules(session, program_id)]


@router.post("/risk/blocklist", status_code=204, dependencies=[Admin],
             summary="Block a contact, device or IP from earning and redeeming")
async def block(body: BlockIn, session: Session) -> Response:
    await risk.block(session, body.dimension, body.value, body.reason)
    return Response(status_code=204)


@router.delete("/risk/blocklist/{dimension}/{value}", status_code=204, dependencies=[Admin],
               summary="Lift a block")
async def unblock(dimension: Literal["contact", "device", "ip"], value: str, session: Session) -> Response:
    await risk.unblock(session, dimension, value)
    return Response(status_code=204)


@router.get("/reviews", response_model=list[ReviewOut], dependencies=[Reader],
            summary="Credits held by risk controls (`status=pending` is the queue)")
async def list_reviews(session: Session, status: Literal["pending", "released", "rejected"] | None = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ReviewOut]:
    return [review_out(r) for r in await risk.list_reviews(session, status, limit)]


@router.post("/reviews/{review_id}/{decision}", response_model=ReviewOut, dependencies=[Admin],
             summary="Release a held credit (it is posted, once) or reject it")
async def decide_review(review_id: int, decision: Literal["release", "reject"], body: ResolveIn,
                        session: Session) -> ReviewOut:
    review, receipt = await risk.decide(session, review_id, release=decision == "release", note=body.note,
                                        now=datetime.now(UTC))
    return review_out(review, receipt)
