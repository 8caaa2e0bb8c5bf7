"""Risk controls in the store: rules, blocklist, velocity counts (ledger_risk_events) and held credits.

`screen` runs in the caller's transaction before a credit or a redemption: it serialises on the subjects
(transaction advisory locks, taken in sorted order) so parallel requests cannot all slip under a limit,
counts each rule's window in one statement, and records the action when it goes ahead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.ledger.postings import Kind, Request
from domain.ledger.risk import Dimension, Usage, VelocityRule, Verdict, judge, subjects
from store.ledger.accounts import post
from store.ledger.programs import get_program
from store.ledger.receipts import Receipt


async def create_rule(session: AsyncSession, *, program_id: int, action: str, dimension: str, window_seconds: int,
                      max_count: int | None, max_amount: int | None, verdict: str) -> VelocityRule:
    """Add a velocity limit to a program (which must exist)."""
    await get_program(session, program_id)
    row = (await session.execute(text("""
        INSERT INTO ledger_risk_rules (program_id, action, dimension, window_seconds, max_count, max_amount, verdict)
        VALUES (:p, :a, :d, :w, :c, :m, :v) RETURNING id
    """), {"p": program_id, "a": action, "d": dimension, "w": window_seconds, "c": max_count, "m": max_amount,
           "v": verdict})).one()
    return VelocityRule(row.id, action, Dimension(dimension), window_seconds, max_count, max_amount, Verdict(verdict))


async def rules(session: AsyncSession, program_id: int, action: str | None = None) -> list[VelocityRule]:
    rows = await session.execute(text("""
        SELECT id, action, dimension, window_seconds, max_count, max_amount, verdict FROM ledger_risk_rules
        WHERE program_id = :p AND (CAST(:a AS text) IS NULL OR action = :a) ORDER BY id
    """), {"p": program_id, "a": action})
    return [VelocityRule(r.id, r.action, Dimension(r.dimension), r.window_seconds, r.max_count, r.max_amount,
                         Verdict(r.verdict)) for r in rows]


async def block(session: AsyncSession, dimension: str, value: str, reason: str | None) -> None:
    await session.execute(text("""
        INSERT INTO ledger_blocklist (dimension, value, reason) VALUES (:d, :v, :r)
        ON CONFLICT (dimension, value) DO UPDATE SET reason = excluded.reason
    """), {"d": dimension, "v": value, "r": reason})


async def unblock(session: AsyncSession, dimension: str, value: str) -> None:
    result = await session.execute(text("DELETE FROM ledger_blocklist WHERE dimension = :d AND value = :v"),
                                   {"d": dimension, "v": value})
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound(f"{dimension} {value!r} is not on the blocklist")


async def screen(session: AsyncSession, *, program_id: int, action: str, contact_id: int, device: str | None,
                 ip: str | None, amount: int, reference: str, now: datetime) -> tuple[Verdict, str]:
    """Judge an action; when it is not refused, count it towards the velocity limits."""
    found = subjects(contact_id, device, ip)
    for dimension, value in sorted(found.items()):
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
                              {"k": f"risk:{program_id}:{action}:{dimension}:{value}"})
    blocked = [(Dimension(r.dimension), r.value) for r in await session.execute(text("""
        SELECT dimension, value FROM ledger_blocklist
        WHERE (dimension, value) IN (SELECT * FROM unnest(CAST(:d AS text[]), CAST(:v AS text[])))
    """), {"d": list(found), "v": list(found.values())})]
    applicable = [r for r in await rules(session, program_id, action) if r.dimension in found]
    usage: dict[int, Usage] = {}
    if applicable:
        rows = await session.execute(text("""
            SELECT k.id, count(e.*) AS n, coalesce(sum(e.amount), 0)::bigint AS total
            FROM unnest(CAST(:ids AS bigint[]), CAST(:dims AS text[]), CAST(:vals AS text[]),
                        CAST(:since AS timestamptz[])) AS k(id, dimension, value, since)
            LEFT JOIN ledger_risk_events e ON e.program_id = :p AND e.action = :a AND e.dimension = k.dimension
                 AND e.value = k.value AND e.at > k.since
            GROUP BY k.id
        """), {"ids": [r.id for r in applicable], "dims": [str(r.dimension) for r in applicable],
               "vals": [found[r.dimension] for r in applicable],
               "since": [now - timedelta(seconds=r.window_seconds) for r in applicable], "p": program_id,
               "a": action})
        usage = {r.id: Usage(r.n, r.total) for r in rows}
    verdict, reason = judge(applicable, usage, amount, blocked)
    if verdict is not Verdict.REFUSE:
        await session.execute(text("""
            INSERT INTO ledger_risk_events (program_id, action, dimension, value, amount, reference, at)
            SELECT :p, :a, k.d, k.v, :n, :r, :t FROM unnest(CAST(:d AS text[]), CAST(:v AS text[])) AS k(d, v)
        """), {"p": program_id, "a": action, "d": list(found), "v": list(found.values()), "n": amount,
               "r": reference, "t": now})
    return verdict, reason


@dataclass(frozen=True)
class Review:
    id: int
    program_id: int
    contact_id: int
    reference: str
    amount: int
    reason: str
    status: str
    note: str | None
    created_at: datetime
    decided_at: datetime | None


def _review(row: Any) -> Review:
    return Review(row.id, row.program_id, row.contact_id, row.reference, int(row.request["amount"]), row.reason,
                  row.status, row.note, row.created_at, row.decided_at)


async def hold(session: AsyncSession, program_id: int, request: Request, reason: str) -> Review:
    """Hold a suspicious credit for review; the same reference again returns the same review."""
    body = {"amount": request.amount, "earned_month": request.earned_month, "memo": request.memo}
    await session.execute(text("""
        INSERT INTO ledger_reviews (program_id, contact_id, reference, request, reason)
        VALUES (:p, :c, :r, CAST(:q AS jsonb), :why) ON CONFLICT (program_id, reference) DO NOTHING
    """), {"p": program_id, "c": request.contact_id, "r": request.reference, "q": json.dumps(body), "why": reason})
    found = await find_review(session, program_id, request.reference)
    assert found is not None
    return found


async def find_review(session: AsyncSession, program_id: int, reference: str) -> Review | None:
    row = (await session.execute(text("SELECT * FROM ledger_reviews WHERE program_id = :p AND reference = :r"),
                                 {"p": program_id, "r": reference})).one_or_none()
    return _review(row) if row else None


async def list_reviews(session: AsyncSession, status: str | None, limit: int) -> list[Review]:
    rows = await session.execute(text("""
        SELECT * FROM ledger_reviews WHERE CAST(:s AS text) IS NULL OR status = :s ORDER BY id DESC LIMIT :l
    """), {"s": status, "l": limit})
    return [_review(r) for r in rows]


async def decide(session: AsyncSession, review_id: int, *, release: bool, note: str,
                 now: datetime) -> tuple[Review, Receipt | None]:
    """Release (post the credit under its own reference, exactly once) or reject a held credit."""
    row = (await session.execute(text("""
        UPDATE ledger_reviews SET status = :s, note = :n, decided_at = :t WHERE id = :i AND status = 'pending'
        RETURNING *
    """), {"i": review_id, "s": "released" if release else "rejected", "n": note, "t": now})).one_or_none()
    if row is None:
        exists = await session.scalar(text("SELECT status FROM ledger_reviews WHERE id = :i"), {"i": review_id})
        if exists is None:
            raise NotFound(f"review {review_id} does not exist")
        raise Conflict(f"review {review_id} is already {exists}")
    receipt = None
    if release:
        q = row.request
        receipt = await post(session, row.program_id, Request(
            row.reference, Kind.CREDIT, row.contact_id, int(q["amount"]), earned_month=q["earned_month"],
            memo=q["memo"]), now=now)
    return _review(row), receipt
