"""Journeys' steps of the erasure and merge cascades: erasure removes where a person is and was; a merge moves a
journey only the merged-away contact was in to the survivor and ends its duplicate run in one they share."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.journeys import erasure, merges
from store.journeys.runtime import State, record_visits, save_states

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def _state(contact: int, status: str = "waiting") -> State:
    return State(contact, 1, 1, "w", status, NOW, "order_paid", {}, NOW)


async def _rows(session: AsyncSession, table: str, contacts: list[int]) -> list[tuple[int, int, str]]:
    column = "status" if table == "journey_states" else "outcome"
    return [tuple(r) for r in await session.execute(text(
        f"SELECT contact_id, journey_id, {column} FROM {table} WHERE contact_id = ANY(:c) ORDER BY 1, 2"),
        {"c": contacts})]


async def test_erasure_removes_states_and_history(sessions: async_sessionmaker[AsyncSession]) -> None:
    contact, journey = random.randrange(10**12, 10**13), random.randrange(10**12, 10**13)
    async with transaction(sessions) as s:
        await save_states(s, journey, [_state(contact)], NOW)
        await record_visits(s, journey, [(contact, 1, 1, "w", "entered")], NOW)
        removed = await erasure.erase(s, [contact])
        assert removed == {"journey_states": 1, "journey_history": 1}
        assert await _rows(s, "journey_states", [contact]) == []


async def test_a_merge_moves_unshared_journeys_and_ends_the_duplicate_run(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    gone, survivor = random.randrange(10**12, 10**13), random.randrange(10**12, 10**13)
    only, shared = random.randrange(10**12, 10**13), random.randrange(10**12, 10**13)
    async with transaction(sessions) as s:
        await save_states(s, only, [_state(gone)], NOW)
        await save_states(s, shared, [_state(gone)], NOW)
        await save_states(s, shared, [_state(survivor, "sleeping")], NOW)
        await record_visits(s, only, [(gone, 1, 1, "w", "entered")], NOW)
        await merges.move(s, [(gone, survivor)])
        assert await _rows(s, "journey_states", [gone, survivor]) == sorted([
            (gone, shared, "exited"), (survivor, only, "waiting"), (survivor, shared, "sleeping")])
        # The ended duplicate run says why, in its state and in a history row that stays with the merged-away id.
        assert await _rows(s, "journey_history", [gone, survivor]) == sorted([
            (gone, shared, "exited"), (survivor, only, "entered")])
        assert await s.scalar(text("SELECT exit_reason FROM journey_states WHERE contact_id = :c"),
                              {"c": gone}) == "merged"
        assert await s.scalar(text("SELECT reason FROM journey_history WHERE contact_id = :c"), {"c": gone}) == "merged"
