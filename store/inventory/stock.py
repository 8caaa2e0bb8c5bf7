"""Stock that never oversells and never leaks: a row per subject (`promotion:{id}` units, `budget:{id}` cents of
discount, `template:{id}` coupons issued — store/promotions/inventory.py — and `reward:{id}` units of a ledger
reward, store/ledger/redemptions.py) with `total`, `reserved` and `used`, in the `promotion_stock` and
`promotion_reservations` tables (named for the domain that created them).

A reservation is one statement, `UPDATE … SET reserved = reserved + n WHERE total - reserved - used >= n`: the
row lock serialises concurrent reservations of a subject and the condition is re-checked on the locked row, so
stock never goes below zero under any concurrency (a CHECK constraint backs it). Each reservation is recorded per
holder (an order id or an issuance reference, namespaced by the domain that holds it) and subject, so reserving
twice takes once, and committing, releasing or giving back moves the units exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError


class OutOfStock(DomainError):
    status = 409
    title = "Out of stock"


@dataclass(frozen=True)
class Stock:
    subject: str
    total: int
    reserved: int
    used: int

    @property
    def available(self) -> int:
        return self.total - self.reserved - self.used


async def set_total(session: AsyncSession, subject: str, total: int) -> None:
    """Create a subject's stock or change its total; never below what is reserved or used."""
    row = await session.scalar(text("""
        INSERT INTO promotion_stock (subject, total) VALUES (:s, :t)
        ON CONFLICT (subject) DO UPDATE SET total = excluded.total
            WHERE promotion_stock.reserved + promotion_stock.used <= excluded.total
        RETURNING 1
    """), {"s": subject, "t": total})
    if row is None:
        raise DomainError(f"stock: {subject} already has more than {total} reserved or used")


async def levels(session: AsyncSession, subjects: Sequence[str]) -> dict[str, Stock]:
    rows = await session.execute(text(
        "SELECT subject, total, reserved, used FROM promotion_stock WHERE subject = ANY(:s)"), {"s": list(subjects)})
    return {r.subject: Stock(r.subject, r.total, r.reserved, r.used) for r in rows}


async def reserve(session: AsyncSession, holder: str, subject: str, quantity: int, *, expires_at: datetime) -> bool:
    """Take `quantity` of a subject for `holder` (idempotent); OutOfStock if there is not enough. A subject without
    a stock row is not counted: False, nothing reserved."""
    created = await session.scalar(text("""
        INSERT INTO promotion_reservations (holder, subject, quantity, expires_at)
        SELECT :h, :s, :q, :e WHERE EXISTS (SELECT 1 FROM promotion_stock WHERE subject = :s)
        ON CONFLICT DO NOTHING RETURNING 1
    """), {"h": holder, "s": subject, "q": quantity, "e": expires_at})
    if not created:
        return bool(await session.scalar(text(
            "SELECT 1 FROM promotion_reservations WHERE holder = :h AND subject = :s"), {"h": holder, "s": subject}))
    left = await session.scalar(text("""
        UPDATE promotion_stock SET reserved = reserved + :q WHERE subject = :s AND total - reserved - used >= :q
        RETURNING total - reserved - used
    """), {"s": subject, "q": quantity})
    if left is None:  # forget the claim too, so a caller that carries on after OutOfStock leaves nothing behind
        await session.execute(text("DELETE FROM promotion_reservations WHERE holder = :h AND subject = :s"),
                              {"h": holder, "s": subject})
        stock = (await levels(session, [subject]))[subject]
        raise OutOfStock(f"{subject} is out of stock: {stock.available} left, {quantity} wanted")
    return True


async def _settle(session: AsyncSession, holder: str, to: str) -> int:
    """Move every reserved unit of `holder` to used (commit) or back (release), once; the units moved."""
    rows = (await session.execute(text("""
        UPDATE promotion_reservations SET status = :to WHERE holder = :h AND status = 'reserved'
        RETURNING subject, quantity
    """), {"h": holder, "to": to})).all()
    if not rows:
        return 0
    moved = {"s": [r.subject for r in rows], "q": [r.quantity for r in rows]}
    if to == "committed":
        await session.execute(text("""
            UPDATE promotion_stock s SET reserved = s.reserved - r.q, used = s.used + r.q
            FROM unnest(CAST(:s AS text[]), CAST(:q AS bigint[])) AS r(subject, q) WHERE s.subject = r.subject
        """), moved)
    else:
        await session.execute(text("""
            UPDATE promotion_stock s SET reserved = s.reserved - r.q
            FROM unnest(CAST(:s AS text[]), CAST(:q AS bigint[])) AS r(subject, q) WHERE s.subject = r.subject
        """), moved)
    return sum(int(r.quantity) for r in rows)


async def commit(session: AsyncSession, holder: str) -> int:
    return await _settle(session, holder, "committed")


async def release(session: AsyncSession, holder: str) -> int:
    return await _settle(session, holder, "released")


async def give_back(session: AsyncSession, holder: str) -> int:
    """Return what `holder` committed (a fulfilled order being compensated) to the stock, once; the units moved."""
    rows = (await session.execute(text("""
        UPDATE promotion_reservations SET status = 'released' WHERE holder = :h AND status = 'committed'
        RETURNING subject, quantity
    """), {"h": holder})).all()
    if rows:
        await session.execute(text("""
            UPDATE promotion_stock s SET used = s.used - r.q
            FROM unnest(CAST(:s AS text[]), CAST(:q AS bigint[])) AS r(subject, q) WHERE s.subject = r.subject
        """), {"s": [r.subject for r in rows], "q": [r.quantity for r in rows]})
    return sum(int(r.quantity) for r in rows)

