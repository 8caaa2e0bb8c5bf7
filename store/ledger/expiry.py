"""Expiry: what remains in due buckets moves to the program's expiry account, a page of contacts at a time.

One set-based query finds the page's due buckets; the expiry postings go through the same batch path as
every other posting (accounts locked in order, exactly once per reference), one per bucket month under
`expire:{program}:{contact}:earned:{month}`. A posting moves what the bucket holds when it is planned, so
a re-run, or a run after one that posted under the older per-run references, expires nothing twice. Until the
sweep runs, the planner and the account view already treat due buckets as spent-out (not spendable).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError
from domain.ledger.operations import ExpiryPage, expiry_cutoff, expiry_reference
from domain.ledger.postings import ExpiryPolicy, Kind, Request, month_of
from store.ledger.postings import apply
from store.ledger.receipts import Receipt, Submission


async def programs_with_expiry(session: AsyncSession, programs: Sequence[int] | None) -> list[int]:
    rows = await session.execute(text("""
        SELECT id FROM ledger_programs WHERE expiry_months IS NOT NULL
          AND (CAST(:ps AS bigint[]) IS NULL OR id = ANY(CAST(:ps AS bigint[]))) ORDER BY id
    """), {"ps": programs})
    return [r.id for r in rows]


async def expire_page(session: AsyncSession, program_id: int, *, now: datetime, after: int,
                      limit: int) -> ExpiryPage:
    """Expire the due buckets of the next `limit` contacts (after `after`) that have any."""
    months = await session.scalar(text("SELECT expiry_months FROM ledger_programs WHERE id = :p"), {"p": program_id})
    today = month_of(now)
    cutoff = expiry_cutoff(ExpiryPolicy(months), today)
    if cutoff is None:
        return ExpiryPage(last=None)
    rows = (await session.execute(text("""
        WITH due AS (
            SELECT DISTINCT contact_id FROM ledger_buckets
            WHERE program_id = :p AND month <= :cutoff AND remaining > 0 AND contact_id > :after
            ORDER BY contact_id LIMIT :limit
        )
        SELECT b.contact_id, array_agg(b.month ORDER BY b.month) AS months
        FROM ledger_buckets b JOIN due USING (contact_id)
        WHERE b.program_id = :p AND b.month <= :cutoff AND b.remaining > 0
        GROUP BY b.contact_id ORDER BY b.contact_id
    """), {"p": program_id, "cutoff": cutoff, "after": after, "limit": limit})).all()
    if not rows:
        return ExpiryPage(last=None)
    subs = [Submission(program_id, Request(expiry_reference(program_id, r.contact_id, month), Kind.EXPIRE,
                                           r.contact_id, months=(month,), memo="points expired"))
            for r in rows for month in r.months]
    outcomes = await apply(session, subs, now=now)
    page = ExpiryPage(last=rows[-1].contact_id, contacts=len(rows))
    for outcome in outcomes:
        if isinstance(outcome, Receipt):
            if not outcome.replayed and outcome.entries:
                page.postings += 1
                page.points += outcome.amount
        elif isinstance(outcome, DomainError):
            page.refused += 1
    return page
