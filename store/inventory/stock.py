"""Stock that never oversells and never leaks: per subject (`promotion:{id}` units, `budget:{id}` cents of
discount, `template:{id}` coupons issued — store/promotions/inventory.py — and `reward:{id}` units of a ledger
reward, store/ledger/redemptions.py) a `total`, `reserved` and `used`, in the `promotion_stock_slots` and
`promotion_reservations` tables (named for the domain that created them); the `promotion_stock` view sums a
subject's slots into one row for readers.

A subject's stock is split over N slot rows (seed 002's hotspot keys: one row many clients decrement at once
serialises them on its lock, held until each transaction commits). A reservation takes its units from one slot and
records itself with a single statement — a random slot with enough left among those no other transaction holds
(`FOR UPDATE SKIP LOCKED`), re-checked on the locked row, `reserved = reserved + n` — so concurrent reservations
take different rows. When no free slot has enough, it locks every slot of the subject in slot order (waiting for
the holders), and takes the units from the first slot that has them, or split over several: "out of stock" is only
said when the slots together, once every concurrent reservation has committed or rolled back, do not have them. A
CHECK per slot makes overselling impossible even for a buggy caller. Each reservation is recorded per holder (an
order id or an issuance reference, namespaced by the domain that holds it) and subject with the slots it took from,
so reserving twice takes once, and committing, releasing or giving back moves the units exactly once, back to the
slots they came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError

MAX_SLOTS = 64
UNITS_PER_SLOT = 64  # a new subject's default: one slot per this many units, 1 to DEFAULT_MAX_SLOTS
DEFAULT_MAX_SLOTS = 16


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


def default_slots(total: int) -> int:
    """Enough slots that concurrent reservations rarely meet, few enough that a slot rarely runs dry before the
    others: small stock stays one row."""
    return max(1, min(DEFAULT_MAX_SLOTS, total // UNITS_PER_SLOT))


def spread(total: int, floors: Sequence[int]) -> list[int]:
    """Each slot's total: what it has reserved or used, plus an even share of the rest (the first slots take the
    remainder's units)."""
    free = total - sum(floors)
    share, extra = divmod(free, len(floors))
    return [floor + share + (1 if i < extra else 0) for i, floor in enumerate(floors)]


async def set_total(session: AsyncSession, subject: str, total: int, *, slots: int | None = None) -> None:
    """Create a subject's stock or change its total (never below what is reserved or used), spread over `slots`
    rows (default: `default_slots(total)` for a new subject, the ones it has for an existing one; never fewer
    than it has, since reservations point at them)."""
    if slots is not None and not 1 <= slots <= MAX_SLOTS:
        raise DomainError(f"slots: between 1 and {MAX_SLOTS}, not {slots}")
    # One writer per subject at a time, so the slots read below are all there are.
    await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('promotion_stock:' || :s))"), {"s": subject})
    rows = (await session.execute(text(
        "SELECT slot, reserved + used AS floor FROM promotion_stock_slots WHERE subject = :s ORDER BY slot FOR UPDATE"
    ), {"s": subject})).all()
    floors = [int(r.floor) for r in rows]
    count = max(len(floors), slots if slots is not None else (len(floors) or default_slots(total)))
    floors += [0] * (count - len(floors))
    if sum(floors) > total:
        raise DomainError(f"stock: {subject} already has more than {total} reserved or used")
    await session.execute(text("""
        INSERT INTO promotion_stock_slots (subject, slot, total)
        SELECT :s, slot, t FROM unnest(CAST(:slots AS smallint[]), CAST(:totals AS bigint[])) AS x(slot, t)
        ON CONFLICT (subject, slot) DO UPDATE SET total = excluded.total
    """), {"s": subject, "slots": list(range(count)), "totals": spread(total, floors)})


async def levels(session: AsyncSession, subjects: Sequence[str]) -> dict[str, Stock]:
    rows = await session.execute(text(
        "SELECT subject, total, reserved, used FROM promotion_stock WHERE subject = ANY(:s)"), {"s": list(subjects)})
    return {r.subject: Stock(r.subject, r.total, r.reserved, r.used) for r in rows}


# The common case in one statement: no reservation of this holder for this subject yet, and a free slot (not locked
# by another reservation) with enough left, chosen at random, locked, re-checked, taken, and the reservation
# recorded with it. Nothing returned: the holder has one already, or every slot with enough was busy, or none has
# enough. (Two attempts of one holder at once both pass the NOT EXISTS; the second's INSERT then fails on the
# primary key and its transaction rolls back, units included: a retry finds the first's reservation.)
CLAIM_AND_TAKE = text("""
    WITH pick AS (
        SELECT slot FROM promotion_stock_slots
        WHERE subject = :s AND total - reserved - used >= :q
          AND NOT EXISTS (SELECT 1 FROM promotion_reservations WHERE holder = :h AND subject = :s)
        ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED
    ), taken AS (
        UPDATE promotion_stock_slots t SET reserved = t.reserved + :q FROM pick
        WHERE t.subject = :s AND t.slot = pick.slot AND t.total - t.reserved - t.used >= :q
        RETURNING t.slot
    )
    INSERT INTO promotion_reservations (holder, subject, quantity, slots, parts, expires_at)
    SELECT :h, :s, :q, ARRAY[slot], ARRAY[CAST(:q AS bigint)], :e FROM taken
    RETURNING 1
""")


async def reserve(session: AsyncSession, holder: str, subject: str, quantity: int, *, expires_at: datetime) -> bool:
    """Take `quantity` of a subject for `holder` (idempotent); OutOfStock if there is not enough. A subject without
    stock is not counted: False, nothing reserved."""
    claim = {"h": holder, "s": subject, "q": quantity, "e": expires_at}
    if await session.scalar(CLAIM_AND_TAKE, claim) is not None:
        return True
    created = await session.scalar(text("""
        INSERT INTO promotion_reservations (holder, subject, quantity, expires_at)
        SELECT :h, :s, :q, :e WHERE EXISTS (SELECT 1 FROM promotion_stock_slots WHERE subject = :s)
        ON CONFLICT DO NOTHING RETURNING 1
    """), claim)
    if not created:
        return bool(await session.scalar(text(
            "SELECT 1 FROM promotion_reservations WHERE holder = :h AND subject = :s"), {"h": holder, "s": subject}))
    # Every slot in order, waiting for the transactions that hold them: what is left once they are done.
    rows = (await session.execute(text("""
        SELECT slot, total - reserved - used AS available FROM promotion_stock_slots WHERE subject = :s
        ORDER BY slot FOR UPDATE
    """), {"s": subject})).all()
    slots, parts = _split(quantity, [(int(r.slot), int(r.available)) for r in rows])
    if not slots:  # forget the claim too, so a caller that carries on after OutOfStock leaves nothing behind
        await session.execute(text("DELETE FROM promotion_reservations WHERE holder = :h AND subject = :s"),
                              {"h": holder, "s": subject})
        left = sum(max(0, int(r.available)) for r in rows)
        raise OutOfStock(f"{subject} is out of stock: {left} left, {quantity} wanted")
    await session.execute(text("""
        WITH taken AS (
            UPDATE promotion_stock_slots t SET reserved = t.reserved + x.q
            FROM unnest(CAST(:slots AS smallint[]), CAST(:parts AS bigint[])) AS x(slot, q)
            WHERE t.subject = :s AND t.slot = x.slot
        )
        UPDATE promotion_reservations SET slots = :slots, parts = :parts WHERE holder = :h AND subject = :s
    """), {"h": holder, "s": subject, "slots": slots, "parts": parts})
    return True


def _split(quantity: int, available: Sequence[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Where to take `quantity` from: the first slot that has it all, else slots in order; ([], []) if together
    they do not have it."""
    for slot, left in available:
        if left >= quantity:
            return [slot], [quantity]
    slots: list[int] = []
    parts: list[int] = []
    wanted = quantity
    for slot, left in available:
        if left > 0 and wanted > 0:
            take = min(left, wanted)
            slots.append(slot)
            parts.append(take)
            wanted -= take
    return (slots, parts) if wanted == 0 else ([], [])


# The units of a holder's reservations that change status, back to (or into `used` of) the slots they came from.
SETTLE = text("""
    WITH moved AS (
        UPDATE promotion_reservations SET status = :to WHERE holder = :h AND status = :from
        RETURNING subject, slots, parts
    ), units AS (
        SELECT m.subject, x.slot, x.q FROM moved m, unnest(m.slots, m.parts) AS x(slot, q)
    ), changed AS (
        UPDATE promotion_stock_slots t
        SET reserved = t.reserved - CASE WHEN :from = 'reserved' THEN u.q ELSE 0 END,
            used = t.used + CASE WHEN :to = 'committed' THEN u.q WHEN :from = 'committed' THEN -u.q ELSE 0 END
        FROM units u WHERE t.subject = u.subject AND t.slot = u.slot
        RETURNING u.q
    )
    SELECT coalesce(sum(q), 0) FROM changed
""")


async def _settle(session: AsyncSession, holder: str, frm: str, to: str) -> int:
    return int(await session.scalar(SETTLE, {"h": holder, "from": frm, "to": to}) or 0)


async def commit(session: AsyncSession, holder: str) -> int:
    """Move every reserved unit of `holder` to used, once; the units moved."""
    return await _settle(session, holder, "reserved", "committed")


async def release(session: AsyncSession, holder: str) -> int:
    """Give every reserved unit of `holder` back to its slot, once; the units moved."""
    return await _settle(session, holder, "reserved", "released")


async def give_back(session: AsyncSession, holder: str) -> int:
    """Return what `holder` committed (a fulfilled order being compensated) to the stock, once; the units moved."""
    return await _settle(session, holder, "committed", "released")
