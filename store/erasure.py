"""Right to erasure: everything that identifies a person goes; the aggregates and books they fed stay right.

One call, in the caller's transaction, after locking the contact row (so ingest, merges and a second
erasure of the same contact wait for it):

- points ledger: pending holds are voided and what remains is forfeited to the program's `breakage`
  account by a posting with reference `erase:{program}:{contact}` (through the posting service, so
  balance, buckets, entries and system shards move together); accounts, entries, buckets, rollups,
  holds, postings and redemption orders stay, keyed by the now-anonymous contact id, so reconciliation
  still balances. Posting memos, review-queue memos, velocity counts (which hold device ids and IP
  addresses) and a contact blocklist entry go; a pending review is rejected.
- deliveries: rows stay (a completed campaign's counts are counted from them) with the provider's
  message id and error text removed; a delivery still queued becomes `failed` ("contact erased").
- segments: memberships, transitions, computed scores and the event rollup rows are deleted, so counts
  drop the contact at once.
- events, daily aggregates, identities, merge forwards and the contact row itself: `store.events.insert`.
- a `contact_erasures` row records when it happened and how many rows went, with no personal data.

Why the contacts row is deleted rather than kept as a scrubbed tombstone: every query that reads
contacts (lists, rule segments on both backends, campaign audiences, imports, identity resolution)
would need an `erased_at IS NULL` filter forever, and one forgotten filter sends a message to, or counts,
someone who asked to be forgotten. With the row gone, they are all correct by construction. What the
tombstone would have protected — ledger rows pointing at a contact — no longer needs a foreign key
(migration 0009 drops it): the posting paths only create accounts for contacts that exist, so the
anonymous account can never be credited again.

A contact with a redemption order in progress is refused (409): its saga still has to commit or void its
hold, and would retry forever against a contact that no longer exists. Orders finish within minutes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict
from domain.ledger.postings import Kind, Request
from store.events import insert as event_store
from store.ledger.postings import Receipt, Submission, apply, raise_refused

MAX_REFERENCE = 200
ERASED_MEMO = "right to erasure"


class ErasureMustWait(Conflict):
    title = "Erasure must wait"


@dataclass(frozen=True)
class Erasure:
    """What an erasure did: rows removed or scrubbed per table, and points forfeited per program."""

    contact_id: int
    removed: dict[str, int] = field(default_factory=dict)
    forfeited: dict[int, int] = field(default_factory=dict)


def forfeit_reference(program_id: int, contact_id: int) -> str:
    return f"erase:{program_id}:{contact_id}"


def void_reference(program_id: int, contact_id: int, hold_reference: str, cause: str = "erase") -> str:
    """`{hold}:{cause}` (`erase`, `merge`), like reconciliation's `{hold}:timeout`; a hold reference too long
    for that gets a reference derived from the cause, the account and a digest of the hold's reference."""
    plain = f"{hold_reference}:{cause}"
    if len(plain) <= MAX_REFERENCE:
        return plain
    return f"{cause}:{program_id}:{contact_id}:hold:{hashlib.sha256(hold_reference.encode()).hexdigest()[:32]}"


async def hold_voids(session: AsyncSession, accounts: Sequence[tuple[int, int]], *, cause: str = "erase",
                     memo: str = ERASED_MEMO) -> list[Submission]:
    """VOID postings for the pending holds of these (contact, program) accounts, in one query (erasure and
    identity merges close an account's holds first: a forfeit or a move takes only what is not reserved)."""
    holds = (await session.execute(text("""
        SELECT h.contact_id, h.program_id, h.reference FROM ledger_holds h
        JOIN unnest(CAST(:c AS bigint[]), CAST(:p AS bigint[])) AS a(c, p) ON h.contact_id = a.c AND h.program_id = a.p
        WHERE h.status = 'pending'
        ORDER BY h.contact_id, h.program_id, h.reference
    """), {"c": [a[0] for a in accounts], "p": [a[1] for a in accounts]})).all()
    return [Submission(h.program_id, Request(void_reference(h.program_id, h.contact_id, h.reference, cause),
                                             Kind.VOID, h.contact_id, hold_reference=h.reference, memo=memo))
            for h in holds]


async def erase(session: AsyncSession, contact_id: int, *, now: datetime) -> Erasure | None:
    """Erase a contact; None if there is no such contact (nothing is changed)."""
    ids = await _lock(session, contact_id)
    if ids is None:
        return None
    await _refuse_open_orders(session, contact_id)
    removed: dict[str, int] = {}
    removed |= await _scrub_ledger(session, contact_id, now)
    forfeited, voided = await _close_accounts(session, contact_id, now)
    removed["ledger_holds_voided"] = voided
    removed |= await _scrub_deliveries(session, ids)
    removed |= await _drop_segment_rows(session, ids)
    removed["contacts"] = len(ids)
    if not await event_store.erase_contact(session, contact_id):
        raise RuntimeError(f"contact {contact_id} vanished while locked")  # cannot happen under the row lock
    await session.execute(text("""
        INSERT INTO contact_erasures (contact_id, erased_at, removed) VALUES (:c, :t, CAST(:r AS jsonb))
    """), {"c": contact_id, "t": now, "r": orjson.dumps(removed | {"points_forfeited": sum(forfeited.values())}).decode()})
    return Erasure(contact_id, removed, forfeited)


async def erased_at(session: AsyncSession, contact_id: int) -> datetime | None:
    """When a contact was erased (None: never), so a 404 can say why."""
    value: datetime | None = await session.scalar(
        text("SELECT erased_at FROM contact_erasures WHERE contact_id = :c"), {"c": contact_id})
    return value


async def _lock(session: AsyncSession, contact_id: int) -> list[int] | None:
    """Lock the contact; its id plus the ids of anonymous contacts merged into it."""
    found = await session.scalar(text("SELECT id FROM contacts WHERE id = :c FOR UPDATE"), {"c": contact_id})
    if found is None:
        return None
    merged = await session.scalars(text("SELECT contact_id FROM contact_merges WHERE merged_into = :c"),
                                   {"c": contact_id})
    return [contact_id, *merged.all()]


async def _refuse_open_orders(session: AsyncSession, contact_id: int) -> None:
    orders = (await session.scalars(text("""
        SELECT order_id FROM ledger_redemptions WHERE contact_id = :c AND status = 'pending' ORDER BY order_id LIMIT 5
    """), {"c": contact_id})).all()
    if orders:
        raise ErasureMustWait(
            f"contact {contact_id} has redemption order(s) in progress ({', '.join(map(repr, orders))}); "
            "erase after they complete or fail (GET /v1/redemptions/{order}), usually within minutes")


def _count(result: Any) -> int:
    return int(result.rowcount or 0)


async def _scrub_ledger(session: AsyncSession, contact_id: int, now: datetime) -> dict[str, int]:
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
    voids = await hold_voids(session, [(contact_id, p) for p in programs])
    forfeits = [Submission(program, Request(forfeit_reference(program, contact_id), Kind.FORFEIT, contact_id,
                                            memo=ERASED_MEMO)) for program in programs]
    outcomes = await apply(session, [*voids, *forfeits], now=now)  # planned in order: voids before forfeits
    raise_refused(outcomes)  # the whole erasure rolls back with the caller's transaction
    forfeited = {o.program_id: o.amount for o in outcomes
                 if isinstance(o, Receipt) and o.kind == Kind.FORFEIT.value}
    return forfeited, len(voids)


async def _scrub_deliveries(session: AsyncSession, ids: list[int]) -> dict[str, int]:
    result = await session.execute(text("""
        UPDATE deliveries SET provider_message_id = NULL,
            error = CASE status WHEN 'queued' THEN 'contact erased' END,
            status = CASE status WHEN 'queued' THEN 'failed' ELSE status END
        WHERE contact_id = ANY(:ids)
    """), {"ids": ids})
    return {"deliveries": _count(result)}


async def _drop_segment_rows(session: AsyncSession, ids: list[int]) -> dict[str, int]:
    removed = {}
    for table in ("segment_members", "segment_transitions", "contact_scores", "contact_event_recent"):
        result = await session.execute(text(f"DELETE FROM {table} WHERE contact_id = ANY(:ids)"), {"ids": ids})
        removed[table] = _count(result)
    return removed
