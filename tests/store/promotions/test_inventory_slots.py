"""A subject's stock split over slot rows (store/inventory/stock.py): concurrent reservations spread over the slots
and still sell exactly what there is, no slot ever goes below zero, a quantity larger than any one slot is split,
"out of stock" waits for the slots other transactions hold, and released or given-back units return to the slots
they came from."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.inventory import stock
from store.promotions import inventory

LATER = datetime.now(UTC) + timedelta(minutes=5)


async def _subject(sessions: async_sessionmaker[AsyncSession], total: int, slots: int) -> str:
    subject = f"promotion:slots-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        await inventory.set_total(s, subject, total, slots=slots)
    return subject


async def _slots(sessions: async_sessionmaker[AsyncSession], subject: str) -> list[tuple[int, int, int, int]]:
    """(slot, total, reserved, used) of every slot, in order."""
    async with sessions() as s:
        rows = await s.execute(text("SELECT slot, total, reserved, used FROM promotion_stock_slots "
                                    "WHERE subject = :s ORDER BY slot"), {"s": subject})
        return [(r.slot, r.total, r.reserved, r.used) for r in rows]


async def _taken_from(sessions: async_sessionmaker[AsyncSession], holder: str) -> dict[int, int]:
    async with sessions() as s:
        row = (await s.execute(text("SELECT slots, parts FROM promotion_reservations WHERE holder = :h"),
                               {"h": holder})).one()
        return dict(zip(row.slots, row.parts, strict=True))


def test_the_total_is_spread_evenly_and_small_stock_stays_one_row() -> None:
    assert stock.spread(10, [0, 0, 0, 0]) == [3, 3, 2, 2]
    assert stock.spread(10, [4, 0, 0]) == [6, 2, 2]  # a slot keeps what it has taken, the rest is shared
    assert stock.default_slots(7) == 1 and stock.default_slots(1_000) == 15 and stock.default_slots(10**9) == 16


async def test_racing_clients_sell_exactly_the_units_across_slots(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 40, slots=8)
    assert [row[1] for row in await _slots(sessions, subject)] == [5] * 8

    async def attempt(n: int) -> bool:
        try:
            async with transaction(sessions) as s:
                await inventory.reserve(s, f"race-{subject}-{n}", subject, 1, expires_at=LATER)
            return True
        except inventory.OutOfStock:
            return False

    results = await asyncio.gather(*(attempt(n) for n in range(96)))
    assert sum(results) == 40
    slots = await _slots(sessions, subject)
    assert all(total - reserved - used == 0 and reserved >= 0 for _, total, reserved, used in slots), slots
    async with sessions() as s:
        assert (await inventory.levels(s, [subject]))[subject] == inventory.Stock(subject, 40, 40, 0)
        holders = (await s.execute(text("SELECT count(*), count(DISTINCT slots[1]) FROM promotion_reservations "
                                        "WHERE subject = :s"), {"s": subject})).one()
    assert holders[0] == 40 and holders[1] == 8  # every slot sold its units


async def test_released_and_given_back_units_return_to_their_slot(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 8, slots=4)
    async with transaction(sessions) as s:
        assert await inventory.reserve(s, f"back-{subject}", subject, 2, expires_at=LATER)
    taken = await _taken_from(sessions, f"back-{subject}")
    (slot, units), = taken.items()
    assert units == 2 and (await _slots(sessions, subject))[slot] == (slot, 2, 2, 0)
    async with transaction(sessions) as s:
        assert await inventory.release(s, f"back-{subject}") == 2
        assert await inventory.release(s, f"back-{subject}") == 0
    assert await _slots(sessions, subject) == [(i, 2, 0, 0) for i in range(4)]

    async with transaction(sessions) as s:
        assert await inventory.reserve(s, f"kept-{subject}", subject, 1, expires_at=LATER)
        assert await inventory.commit(s, f"kept-{subject}") == 1
    (slot, _), = (await _taken_from(sessions, f"kept-{subject}")).items()
    assert (await _slots(sessions, subject))[slot] == (slot, 2, 0, 1)
    async with transaction(sessions) as s:
        assert await inventory.give_back(s, f"kept-{subject}") == 1
        assert await inventory.give_back(s, f"kept-{subject}") == 0
    assert await _slots(sessions, subject) == [(i, 2, 0, 0) for i in range(4)]


async def test_a_quantity_larger_than_any_slot_is_split_and_settled_back(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 10, slots=4)  # 3, 3, 2, 2
    async with transaction(sessions) as s:
        assert await inventory.reserve(s, f"big-{subject}", subject, 7, expires_at=LATER)
        with pytest.raises(inventory.OutOfStock, match="3 left, 4 wanted"):
            await inventory.reserve(s, f"more-{subject}", subject, 4, expires_at=LATER)
    assert await _taken_from(sessions, f"big-{subject}") == {0: 3, 1: 3, 2: 1}
    async with transaction(sessions) as s:
        assert await inventory.commit(s, f"big-{subject}") == 7
    assert await _slots(sessions, subject) == [(0, 3, 0, 3), (1, 3, 0, 3), (2, 2, 0, 1), (3, 2, 0, 0)]
    async with transaction(sessions) as s:
        assert await inventory.give_back(s, f"big-{subject}") == 7
    assert await _slots(sessions, subject) == [(0, 3, 0, 0), (1, 3, 0, 0), (2, 2, 0, 0), (3, 2, 0, 0)]


async def test_out_of_stock_waits_for_a_slot_another_transaction_holds(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """The only units are in a slot an uncommitted reservation holds: a second reservation waits for it rather than
    saying "out of stock", and gets the unit when the first rolls back."""
    subject = await _subject(sessions, 1, slots=2)  # 1, 0
    async with sessions() as first:
        async with first.begin():
            assert await inventory.reserve(first, f"held-{subject}", subject, 1, expires_at=LATER)

            async def second() -> bool:
                async with transaction(sessions) as s:
                    return await inventory.reserve(s, f"waits-{subject}", subject, 1, expires_at=LATER)

            waiting = asyncio.create_task(second())
            await asyncio.sleep(0.3)
            assert not waiting.done()  # blocked on the held slot, not refused
            await first.rollback()
        assert await asyncio.wait_for(waiting, 10)
    assert await _taken_from(sessions, f"waits-{subject}") == {0: 1}


async def test_a_new_total_is_spread_around_what_slots_hold(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 4, slots=2)
    async with transaction(sessions) as s:
        await inventory.reserve(s, f"hold-{subject}", subject, 2, expires_at=LATER)
    (slot, _), = (await _taken_from(sessions, f"hold-{subject}")).items()
    async with transaction(sessions) as s:
        await inventory.set_total(s, subject, 10)  # the same two slots: the held one keeps its 2, 8 shared
    rows = await _slots(sessions, subject)
    assert len(rows) == 2 and rows[slot] == (slot, 6, 2, 0) and rows[1 - slot] == (1 - slot, 4, 0, 0)
    async with transaction(sessions) as s:
        await inventory.set_total(s, subject, 10, slots=5)
    assert [r[1] - r[2] for r in await _slots(sessions, subject)] == [2, 2, 2, 1, 1]
