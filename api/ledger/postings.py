"""Postings: post points exactly once per reference (a credit is screened by the risk controls first and may
be held for review), and look a posting up by its reference."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from api.deps import Admin, Reader, Session
from api.params import Id
from api.schemas.ledger import EntryOut, PostingIn, PostingOut, ReviewOut
from domain.ledger.postings import Kind, Request, parse_month
from store.ledger import accounts
from store.ledger.receipts import Receipt
from store.ledger.risk import Review
from store.ledger.screening import post_screened

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


def posting_out(receipt: Receipt) -> PostingOut:
    return PostingOut(
        id=receipt.id, program_id=receipt.program_id, reference=receipt.reference, kind=receipt.kind,
        contact_id=receipt.contact_id, amount=receipt.amount, balance_after=receipt.balance_after,
        entries=[EntryOut(account=a, amount=n) for a, n in receipt.entries], hold_reference=receipt.hold_reference,
        memo=receipt.memo, created_at=receipt.created_at,
    )


def review_out(review: Review, receipt: Receipt | None = None) -> ReviewOut:
    return ReviewOut(**asdict(review), posting=posting_out(receipt) if receipt else None)  # type: ignore[arg-type]


@router.post("/postings", response_model=PostingOut, status_code=201, dependencies=[Admin],
             summary="Post points: 201 the first time, 200 with the same body on a replay, 409 if the "
                     "reference was used for something else",
             responses={200: {"model": PostingOut, "description": "A replay: the original receipt"},
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
    outcome = await post_screened(session, body.program_id, request, device=body.device, ip=body.ip,
                                  now=datetime.now(UTC))
    if isinstance(outcome, Review):
        return JSONResponse(review_out(outcome).model_dump(mode="json"), status_code=202)
    if outcome.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return posting_out(outcome)


@router.get("/programs/{program_id}/postings/{reference:path}", response_model=PostingOut, dependencies=[Reader],
            summary="Look a posting up by its reference")
async def get_posting(program_id: Id, reference: str, session: Session) -> PostingOut:
    return posting_out(await accounts.receipt(session, program_id, reference))
