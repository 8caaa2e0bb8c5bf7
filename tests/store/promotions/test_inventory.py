"""Inventory never oversells and never leaks: many concurrent reservations for the last units, releases and
commits that move units exactly once, and the sweep that returns what abandoned holders left."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import DomainError
from store.db import transaction
from store.ledger import programs, redemptions
from store.promotions import inventory

NOW = datetime.now(UTC)


async def _subject(sessions: async_sessionmaker[AsyncSession], total: int) -> str:
    subject = f"promotion:test-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        await inventory.set_total(s, subject, total)
    return subject


async def _level(sessions: async_sessionmaker[AsyncSession], subject: str) -> inventory.Stock:
    async with sessions() as s:
        return (await inventory.levels(s, [subject]))[subject]


async def test_concurrent_reservations_for_the_last_units_never_oversell(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 7)

    async def attempt(n: int) -> bool:
        try:
            async with transaction(sessions) as s:
                await inventory.reserve(s, f"race-{subject}-{n}", subject, 1, expires_at=NOW + timedelta(minutes=5))
            return True
        except inventory.OutOfStock:
            return False

    results = await asyncio.gather(*(attempt(n) for n in range(24)))
    assert sum(results) == 7
    assert await _level(sessions, subject) == inventory.Stock(subject, 7, 7, 0)


async def test_a_reservation_is_taken_and_settled_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 5)
    async with transaction(sessions) as s:
        assert await inventory.reserve(s, "o-twice", subject, 2, expires_at=NOW)
        assert await inventory.reserve(s, "o-twice", subject, 2, expires_at=NOW)  # a retry takes nothing more
    assert (await _level(sessions, subject)).reserved == 2
    async with transaction(sessions) as s:
        assert await inventory.commit(s, "o-twice") == 2
        assert await inventory.commit(s, "o-twice") == 0
        assert await inventory.release(s, "o-twice") == 0  # committed: a late release changes nothing
    assert await _level(sessions, subject) == inventory.Stock(subject, 5, 0, 2)


async def test_out_of_stock_says_how_many_are_left(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 1)
    async with transaction(sessions) as s:
        with pytest.raises(inventory.OutOfStock, match="1 left, 2 wanted"):
            await inventory.reserve(s, "o-big", subject, 2, expires_at=NOW)


async def test_abandoned_reservations_come_back(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 3)
    async with transaction(sessions) as s:
        await inventory.reserve(s, f"gone-{subject}", subject, 3, expires_at=NOW - timedelta(seconds=1))
    assert (await _level(sessions, subject)).available == 0
    async with transaction(sessions) as s:
        assert await inventory.release_expired(s, NOW) >= 3
    assert await _level(sessions, subject) == inventory.Stock(subject, 3, 0, 0)


async def test_the_total_cannot_drop_below_what_is_taken(sessions: async_sessionmaker[AsyncSession]) -> None:
    subject = await _subject(sessions, 4)
    async with transaction(sessions) as s:
        await inventory.reserve(s, f"keep-{subject}", subject, 3, expires_at=NOW + timedelta(minutes=5))
    async with transaction(sessions) as s:
        with pytest.raises(DomainError, match="already has more than 2"):
            await inventory.set_total(s, subject, 2)


async def test_ledger_rewards_count_their_stock_in_the_shared_inventory(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    order = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        program = await programs.create_program(s, name=f"inv-{uuid.uuid4().hex[:8]}", unit="points",
                                                expiry_months=None, retention_months=6)
        reward = await redemptions.create_reward(s, program_id=program.id, name="Mug", cost=10, stock=3)
    subject = redemptions.reward_subject(reward.id)

    async def level() -> tuple[int, int, int]:
        async with sessions() as s:
            found = (await inventory.levels(s, [subject]))[subject]
            assert (await redemptions.get_reward(s, reward.id)).stock == found.available
            return found.available, found.reserved, found.used

    assert await level() == (3, 0, 0)
    async with transaction(sessions) as s:
        await redemptions.reserve(s, order, reward.id, 2)
        await redemptions.reserve(s, order, reward.id, 2)  # the saga retried: taken once
    assert await level() == (1, 2, 0)
    async with transaction(sessions) as s:
        await redemptions.fulfil(s, order)
    assert await level() == (1, 0, 2)
    async with transaction(sessions) as s:  # compensated after fulfilment: given back once
        assert await redemptions.release(s, order) == 2
        assert await redemptions.release(s, order) == 0
    assert await level() == (3, 0, 0)
    async with transaction(sessions) as s:  # the promotions' leak sweep leaves the saga's reservations alone
        await redemptions.reserve(s, f"{order}-2", reward.id, 1)
        await inventory.release_expired(s, NOW + timedelta(days=365))
    assert await level() == (2, 1, 0)
