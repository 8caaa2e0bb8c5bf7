"""Screening a credit before it is posted: risk controls (blocklist, velocity limits) refuse it, hold it for
review, or let it through, in the caller's transaction together with the posting itself."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.ledger.postings import Kind, Request, month_of
from domain.ledger.risk import Verdict, refusal
from store.ledger.accounts import post
from store.ledger.postings import existing
from store.ledger.programs import get_program
from store.ledger.receipts import Receipt
from store.ledger.risk import Review, find_review, hold, screen


async def screen_credit(session: AsyncSession, program_id: int, request: Request, *, device: str | None,
                        ip: str | None, now: datetime) -> Review | None:
    """Risk controls on a new credit: raises the refusal, returns the review it is held in, or None to post it.

    A replay of a posted reference is not counted again (the ledger answers it), and a credit already held
    is answered by its review until someone releases it."""
    program = await get_program(session, program_id)
    if (program_id, request.reference) in await existing(session, [(program_id, request.reference)]):
        return None
    review = await find_review(session, program_id, request.reference)
    if review is None:
        request.validate()
        if request.earned_month is not None:  # never hold for review what the ledger would refuse anyway
            program.policy.check_earning(request.earned_month, month_of(now))
        verdict, reason = await screen(session, program_id=program_id, action="credit",
                                       contact_id=request.contact_id, device=device, ip=ip,
                                       amount=request.amount, reference=request.reference, now=now)
        if verdict is Verdict.REFUSE:
            raise refusal(reason)
        if verdict is Verdict.ALLOW:
            return None
        review = await hold(session, program_id, request, reason)
    if review.status == "released":
        return None
    return review


async def post_screened(session: AsyncSession, program_id: int, request: Request, *, device: str | None,
                        ip: str | None, now: datetime) -> Receipt | Review:
    """A posting from outside (the API): a credit is screened first and may come back as the review holding it."""
    if request.kind is Kind.CREDIT:
        review = await screen_credit(session, program_id, request, device=device, ip=ip, now=now)
        if review is not None:
            return review
    return await post(session, program_id, request, now=now)
