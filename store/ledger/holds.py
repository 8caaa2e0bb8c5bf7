"""Closing an account's pending holds: the VOID postings that release them, for erasure and identity merges
(a forfeit or a move takes only what is not reserved, so the holds go first)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ledger.postings import Kind, Request
from store.ledger.receipts import Submission

MAX_REFERENCE = 200


def void_reference(program_id: int, contact_id: int, hold_reference: str, cause: str) -> str:
    """`{hold}:{cause}` (`erase`, `merge`), like reconciliation's `{hold}:timeout`; a hold reference too long
    for that gets a reference derived from the cause, the account and a digest of the hold's reference."""
    plain = f"{hold_reference}:{cause}"
    if len(plain) <= MAX_REFERENCE:
        return plain
    return f"{cause}:{program_id}:{contact_id}:hold:{hashlib.sha256(hold_reference.encode()).hexdigest()[:32]}"


async def hold_voids(session: AsyncSession, accounts: Sequence[tuple[int, int]], *, cause: str,
                     memo: str) -> list[Submission]:
    """VOID postings for the pending holds of these (contact, program) accounts, in one query."""
    holds = (await session.execute(text("""
        SELECT h.contact_id, h.program_id, h.reference FROM ledger_holds h
        JOIN unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[])) AS a(c, p) ON h.contact_id = a.c AND h.program_id = a.p
        WHERE h.status = 'pending'
        ORDER BY h.contact_id, h.program_id, h.reference
    """), {"c": [a[0] for a in accounts], "p": [a[1] for a in accounts]})).all()
    return [Submission(h.program_id, Request(void_reference(h.program_id, h.contact_id, h.reference, cause),
                                             Kind.VOID, h.contact_id, hold_reference=h.reference, memo=memo))
            for h in holds]
