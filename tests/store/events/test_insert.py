"""Event storage on real Postgres: concurrent retries, the outbox cursor, aggregates across merges."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.events import Event, parse_batch
from store.contacts.identities import find_contact
from store.db import plain_url, transaction
from store.events.insert import IngestResult, connect_writer, ingest_known
from store.events.outbox import read_new_events
from store.ingest import ingest


def _batch(items: list[dict]) -> list[Event]:
    return parse_batch({"batch": items}, received_at=datetime.now(UTC), new_id=lambda: uuid.uuid4().hex)


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def _ingest(sessions: async_sessionmaker[AsyncSession], items: list[dict]) -> IngestResult:
    async with transaction(sessions) as s:
        return await ingest(s, _batch(items))


async def test_concurrent_retries_of_one_batch_store_it_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    user = f"u-{_tag()}"
    async with transaction(sessions) as s:  # the user exists, so both retries take the fast path
        await ingest(s, _batch([{"type": "identify", "userId": user}]))
    items = [{"type": "track", "userId": user, "event": "tap", "messageId": f"{user}-{i}"} for i in range(50)]
    results = await asyncio.gather(*(_ingest(sessions, items) for _ in range(4)))
    assert sum(r.inserted for r in results) == 50
    async with sessions() as s:
        contact = await find_contact(s, "user_id", user)
        count = await s.scalar(text("SELECT count(*) FROM events WHERE contact_id = :c AND type = 'track'"),
                               {"c": contact})
        daily = await s.scalar(text("SELECT sum(count) FROM contact_event_daily WHERE contact_id = :c"),
                               {"c": contact})
    assert count == 50 and daily == 50


async def test_new_anonymous_id_in_concurrent_batches_makes_one_contact(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    anon = f"a-{_tag()}"
    await asyncio.gather(*(_ingest(sessions, [{"type": "page", "anonymousId": anon, "name": str(i)}])
                           for i in range(4)))
    async with sessions() as s:
        contact = await find_contact(s, "anonymous_id", anon)
        count = await s.scalar(text("SELECT count(*) FROM events WHERE contact_id = :c"), {"c": contact})
    assert count == 4


async def test_outbox_hands_committed_events_to_a_consumer_once(
        sessions: async_sessionmaker[AsyncSession], outbox: Any) -> None:
    consumer = f"test-{_tag()}"
    await outbox.start(consumer)
    user = f"u-{_tag()}"
    await _ingest(sessions, [{"type": "track", "userId": user, "event": f"e{i}"} for i in range(3)])
    async with sessions() as s:
        contact = await find_contact(s, "user_id", user)
    assert contact is not None
    handed = await outbox.drain(consumer, lambda e: e.contact_id == contact, 3)  # other writers share it
    assert [e.event for e in handed if e.contact_id == contact] == ["e0", "e1", "e2"]
    async with transaction(sessions) as s:
        again = await read_new_events(s, consumer, limit=1000)
    assert not any(e.id in {b.id for b in handed} for e in again)


async def test_merge_moves_events_and_aggregates_and_the_outbox_follows(
        sessions: async_sessionmaker[AsyncSession], outbox: Any) -> None:
    consumer = f"test-{_tag()}"
    await outbox.start(consumer)
    user, anon = f"u-{_tag()}", f"a-{_tag()}"
    day = "2024-03-01T10:00:00Z"
    await _ingest(sessions, [{"type": "track", "anonymousId": anon, "event": "view", "timestamp": day}] * 1
                  + [{"type": "track", "anonymousId": anon, "event": "view", "timestamp": day}])
    await _ingest(sessions, [{"type": "track", "userId": user, "event": "view", "timestamp": day}])
    await _ingest(sessions, [{"type": "identify", "userId": user, "anonymousId": anon}])
    async with sessions() as s:
        contact = await find_contact(s, "user_id", user)
        assert await find_contact(s, "anonymous_id", anon) == contact
        daily = (await s.execute(text("SELECT day::text, count FROM contact_event_daily WHERE contact_id = :c"),
                                 {"c": contact})).all()
    assert [tuple(r) for r in daily] == [("2024-03-01", 3)]
    seen = await outbox.drain(consumer, lambda e: e.contact_id == contact, 4)
    assert sorted(e.type for e in seen) == ["identify", "track", "track", "track"]


async def test_a_contact_written_without_identities_is_found_not_duplicated(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    user = f"u-{_tag()}"
    async with transaction(sessions) as s:
        contact = await s.scalar(text("INSERT INTO contacts (user_id) VALUES (:u) RETURNING id"), {"u": user})
    result = await _ingest(sessions, [{"type": "track", "userId": user, "event": "login"}])
    assert result.inserted == 1
    async with sessions() as s:
        assert await find_contact(s, "user_id", user) == contact


async def _stored(sessions: async_sessionmaker[AsyncSession], user: str) -> list[tuple]:
    async with sessions() as s:
        contact = await find_contact(s, "user_id", user)
        rows = await s.execute(text("SELECT message_id, type, event, properties, context FROM events"
                                    " WHERE contact_id = :c AND type <> 'identify' ORDER BY id"), {"c": contact})
        return [tuple(r) for r in rows]


async def test_known_contact_batches_store_each_event_with_its_own_context_and_a_missing_name_as_null(
        database_url: str, sessions: async_sessionmaker[AsyncSession]) -> None:
    user = f"u-{_tag()}"
    await _ingest(sessions, [{"type": "identify", "userId": user}])
    shared = {"ip": "203.0.113.7", "library": {"name": "sdk"}}
    items = [{"type": "track", "userId": user, "event": "tap", "messageId": f"{user}-1", "context": shared,
              "properties": {"n": 1}},
             {"type": "page", "userId": user, "messageId": f"{user}-2", "context": {"ip": "198.51.100.4"}},
             {"type": "track", "userId": user, "event": "tap", "messageId": f"{user}-3", "context": shared,
              "properties": {"n": 3}}]
    conn = await connect_writer(plain_url(database_url))
    try:  # the hot path: plain events for a known contact, one statement on an autocommit connection
        results = await ingest_known(conn, [_batch(items[:2]), _batch(items[2:])])
    finally:
        await conn.close()
    assert [(r.received, r.inserted) for r in results if r] == [(2, 2), (1, 1)]
    assert await _stored(sessions, user) == [
        (f"{user}-1", "track", "tap", {"n": 1}, shared),
        (f"{user}-2", "page", None, {}, {"ip": "198.51.100.4"}),
        (f"{user}-3", "track", "tap", {"n": 3}, shared)]


async def test_values_holding_the_column_separators_are_stored_exactly_and_deduplicated(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    user = f"u-{_tag()}\x1e\x1f"  # the characters that join column values take the text-array statement
    items = [{"type": "track", "userId": user, "event": "a\x1fb", "messageId": f"{user}-m\x1e1"},
             {"type": "track", "userId": user, "event": "c\x1ed", "messageId": f"{user}-m2",
              "properties": {"s": "x\x1ey"}}]
    await _ingest(sessions, [{"type": "identify", "userId": user}])
    first = await _ingest(sessions, items)
    replay = await _ingest(sessions, items)
    assert (first.inserted, replay.inserted) == (2, 0)
    assert await _stored(sessions, user) == [(f"{user}-m\x1e1", "track", "a\x1fb", {}, {}),
                                             (f"{user}-m2", "track", "c\x1ed", {"s": "x\x1ey"}, {})]
