"""Points ledger: programs, postings (exactly once per reference), account balances and statements."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Admin, Reader, Session
from api.schemas.ledger import (
    AccountOut, BucketOut, EntryOut, MonthOut, PostingIn, PostingOut, ProgramIn, ProgramOut, StatementLineOut,
    StatementOut,
)
from domain.ledger import Kind, Request, month_label, parse_month
from store import ledger as store

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


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
                        409: {"description": "The reference was already used for a different posting"},
                        422: {"description": "Invalid, or not enough points"}})
async def create_posting(body: PostingIn, session: Session, response: Response) -> PostingOut:
    request = Request(
        reference=body.reference, kind=Kind(body.kind), contact_id=body.contact_id, amount=body.amount,
        earned_month=parse_month(body.earned_month) if body.earned_month else None,
        hold_reference=body.hold_reference, hold_seconds=body.hold_seconds, memo=body.memo,
    )
    receipt = await store.post(session, body.program_id, request, now=datetime.now(UTC))
    if receipt.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return posting_out(receipt)


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
