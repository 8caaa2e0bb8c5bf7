"""The ledger's step of a right-to-erasure (`store.erasure`): free text and risk subjects go, the remaining points
are forfeited to breakage, and the books stay balanced under the now-anonymous contact id."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ledger.postings import Kind, Request
from store.ledger.holds import hold_voids
from store.ledger.postings import apply, raise_refused
from store.ledger.receipts import Receipt, Submission

ERASED_MEMO = "right to erasure"
# What erasure does to each ledger table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "ledger_accounts": "kept, keyed by the anonymous id, emptied by an `erase:{program}:{contact}` forfeit",
    "ledger_buckets": "emptied by that forfeit (through the posting service, with balance and entries)",
    "ledger_holds": "pending holds voided first (`{hold}:erase`); the rows stay",
    "ledger_postings": "kept for reconciliation; memos of the contact's postings and settled holds cleared",
    "ledger_entries": "kept: amounts and references, no personal data",
    "ledger_rollups": "kept: monthly sums, no personal data",
    "ledger_findings": "kept: reconciliation findings about the anonymous account",
    "ledger_redemptions": "kept; erasure waits while an order is pending (see `open_orders`)",
    "ledger_reviews": "request memo cleared; a pending review is rejected ('contact erased')",
    "ledger_risk_events": "the contact's velocity rows, and the device and IP rows recorded with them, deleted",
    "ledger_blocklist": "a block on the contact deleted",
}


def forfeit_reference(program_id: int, contact_id: int) -> str:
    return f"erase:{program_id}:{contact_id}"


async def open_orders(session: AsyncSession, contact_id: int) -> list[str]:
    """Up to five redemption orders of the contact still in progress: their sagas must commit or void their
    holds first, and would retry forever against a contact that no longer exists."""
    return list((await session.scalars(text("""
        SELECT order_id FROM ledger_redemptions WHERE contact_id = :c AND status = 'pending' ORDER BY order_id LIMIT 5
    """), {"c": contact_id})).all())


async def erase(session: AsyncSession, contact_id: int, *, now: datetime) -> tuple[dict[str, int], dict[int, int]]:
    """Scrub, then close the contact's accounts: (rows scrubbed or removed per table, points forfeited per program)."""
    removed = await _scrub(session, contact_id, now)
    forfeited, voided = await _close_accounts(session, contact_id, now)
    removed["ledger_holds_voided"] = voided
    return removed, forfeited


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


async def _scrub(session: AsyncSession, contact_id: int, now: datetime) -> dict[str, int]:
    """Free text and risk subjects; the amounts, references and accounts stay."""
    params = {"c": contact_id, "cs": str(contact_id), "t": now}
    memos = await session.execute(text("""
        UPDATE ledger_postings p SET memo = NULL
        WHERE p.memo IS NOT NULL AND (
            p.id IN (SELECT e.posting_id FROM ledger_entries e WHERE e.contact_id = :c)
            OR (p.program_id, p.reference) IN (SELECT h.program_id, h.settled_by FROM ledger_holds h
                                               WHERE h.contact_id = :c AND h.settled_by IS NOT NULL))
    """), params)
    reviews = await session.execute(text("""
        UPDATE ledger_reviews SET request = jsonb_set(request, '{memo}', 'null'),
            status = CASE status WHEN 'pending' THEN 'rejected' ELSE status END,
            note = CASE status WHEN 'pending' THEN 'contact erased' ELSE note END,
            decided_at = CASE status WHEN 'pending' THEN :t ELSE decided_at END
        WHERE contact_id = :c
    """), params)
    # Every screened action records a `contact` row next to its device and IP rows (same reference and
    # time): find the contact's rows through the index, then everything recorded with them.
    risk = await session.execute(text("""
        WITH mine AS (
            SELECT e.program_id, e.action, e.reference, e.at
            FROM ledger_programs p CROSS JOIN (VALUES ('credit'), ('redeem')) AS a(action)
            JOIN ledger_risk_events e ON e.program_id = p.id AND e.action = a.action
                 AND e.dimension = 'contact' AND e.value = :cs
        )
        DELETE FROM ledger_risk_events e USING mine m
        WHERE e.program_id = m.program_id AND e.action = m.action AND e.at = m.at AND e.reference = m.reference
    """), params)
    blocked = await session.execute(text(
        "DELETE FROM ledger_blocklist WHERE dimension = 'contact' AND value = :cs"), params)
    return {"ledger_postings_memos": _count(memos), "ledger_reviews": _count(reviews),
            "ledger_risk_events": _count(risk), "ledger_blocklist": _count(blocked)}


async def _close_accounts(session: AsyncSession, contact_id: int, now: datetime) -> tuple[dict[int, int], int]:
    """Void pending holds, then forfeit each account's remaining points to breakage (one batch of postings)."""
    programs = (await session.scalars(text(
        "SELECT program_id FROM ledger_accounts WHERE contact_id = :c ORDER BY program_id"), {"c": contact_id})).all()
    if not programs:
        return {}, 0
    voids = await hold_voids(session, [(contact_id, p) for p in programs], cause="erase", memo=ERASED_MEMO)
    forfeits = [Submission(program, Request(forfeit_reference(program, contact_id), Kind.FORFEIT, contact_id,
                                            memo=ERASED_MEMO)) for program in programs]
    outcomes = await apply(session, [*voids, *forfeits], now=now)  # planned in order: voids before forfeits
    raise_refused(outcomes)  # the whole erasure rolls back with the caller's transaction
    forfeited = {o.program_id: o.amount for o in outcomes
                 if isinstance(o, Receipt) and o.kind == Kind.FORFEIT.value}
    return forfeited, len(voids)
