"""Accounts: a contact's balance, what expires soon and the monthly buckets; the statement of its postings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, Session
from api.params import Id
from api.schemas.ledger import AccountOut, BucketOut, MonthOut, StatementLineOut, StatementOut
from domain.ledger.postings import month_label
from store.ledger import accounts
from store.ledger.programs import get_program

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


@router.get("/accounts/{contact_id}", response_model=AccountOut, dependencies=[Reader],
            summary="A contact's spendable balance, what expires soon, what expired, and the spendable monthly "
                    "buckets")
async def get_account(contact_id: Id, session: Session,
                      program_id: Annotated[Id, Query(description="The points program.")]) -> AccountOut:
    program = await get_program(session, program_id)
    view = await accounts.account(session, program, contact_id, now=datetime.now(UTC))
    return AccountOut(
        program_id=view.program_id, contact_id=view.contact_id, balance=view.balance, held=view.held,
        expiring_soon=view.expiring_soon, expired=view.expired,
        buckets=[BucketOut(month=month_label(b.month), remaining=b.remaining,
                           expires_end_of=month_label(b.expires_after) if b.expires_after is not None else None)
                 for b in view.buckets],
    )


@router.get("/accounts/{contact_id}/statement", response_model=StatementOut, dependencies=[Reader],
            summary="Recent postings of a contact, newest first, plus rolled-up older months")
async def get_statement(
    contact_id: Id, session: Session, program_id: Annotated[Id, Query()],
    before: Annotated[Id | None, Query(description="Return postings older than this posting id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> StatementOut:
    lines, history = await accounts.statement(session, program_id, contact_id, before=before, limit=limit)
    return StatementOut(
        lines=[StatementLineOut(posting_id=x.posting_id, reference=x.reference, kind=x.kind, amount=x.amount,
                                memo=x.memo, created_at=x.created_at) for x in lines],
        next_before=lines[-1].posting_id if len(lines) == limit else None,
        history=[MonthOut(month=month_label(h.month), credited=h.credited, debited=h.debited) for h in history],
    )
