"""The batching writer and the ingest use case on real Postgres: a batch holding a value the database refuses
fails alone, named, and never takes its neighbours down with it."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.events import Event, InvalidEvent, parse_batch
from store.db import plain_url, refused_value, transaction
from store.events.insert import IngestResult
from store.ingest import BatchWriter, ingest, refusal


def _batch(items: list[dict]) -> list[Event]:
    return parse_batch({"batch": items}, received_at=datetime.now(UTC), new_id=lambda: uuid.uuid4().hex)


def _tracks(user: str, tag: str, n: int) -> list[Event]:
    return _batch([{"type": "track", "userId": user, "event": "tap", "messageId": f"{tag}-{i}",
                    "properties": {"i": i}} for i in range(n)])


# Crafted past the parser (the API's input hygiene refuses such values earlier): the writer must hold regardless.
def _refused_by_postgres(event: Event) -> Event:
    return replace(event, properties={"note": "nul \x00 inside"})  # jsonb cannot store \u0000


def _refused_by_the_driver(event: Event) -> Event:
    return replace(event, event="tap\x00")  # text cannot hold NUL: psycopg refuses before sending


async def _stored(sessions: async_sessionmaker[AsyncSession], message_ids: list[str]) -> dict[str, int]:
    async with sessions() as s:
        rows = await s.execute(text("SELECT message_id, count(*) FROM events WHERE message_id = ANY(:m) GROUP BY 1"),
                               {"m": message_ids})
        return {r[0]: r[1] for r in rows}


async def test_a_refused_batch_fails_alone_and_its_grouped_neighbours_are_stored_once(
        sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
    """Twenty-four good batches from six users and two poisoned ones (one Postgres refuses, one the driver
    refuses) reach the writer together, so they are grouped into one statement that fails. Every good batch is
    stored exactly once and answered with its own counts; only the poisoned ones fail, each with its own
    refusal, and nothing of them (not even their good events) is stored."""
    tag = uuid.uuid4().hex[:8]
    users = [f"iso-{tag}-{n}" for n in range(6)]
    async with transaction(sessions) as s:  # known people: every batch takes the one-statement hot path
        await ingest(s, _batch([{"type": "identify", "userId": u} for u in users]))
    good = [_tracks(users[n % 6], f"{tag}-good-{n}", 5) for n in range(24)]
    poisoned = [_tracks(users[0], f"{tag}-bad-pg", 5), _tracks(users[1], f"{tag}-bad-driver", 5)]
    poisoned[0][3] = _refused_by_postgres(poisoned[0][3])
    poisoned[1][1] = _refused_by_the_driver(poisoned[1][1])
    batches = [*good[:7], poisoned[0], *good[7:19], poisoned[1], *good[19:]]

    writer = BatchWriter(plain_url(database_url), connections=1)
    try:
        answers = await asyncio.gather(*(writer.write(b) for b in batches), return_exceptions=True)
    finally:
        await writer.close()

    by_batch = dict(zip(map(id, batches), answers, strict=True))
    assert [by_batch[id(b)] for b in good] == [IngestResult(received=5, inserted=5)] * 24
    for batch in poisoned:
        assert isinstance(by_batch[id(batch)], Exception) and refused_value(by_batch[id(batch)])
    stored = await _stored(sessions, [e.message_id for b in batches for e in b])
    assert stored == {e.message_id: 1 for b in good for e in b}


async def test_the_refusal_names_the_event_and_stores_nothing(sessions: async_sessionmaker[AsyncSession]) -> None:
    """Whichever path failed (the hot path's statement, or identity resolution writing traits), the 400 names
    the event holding the refused value, found by trying halves of the batch in savepoints rolled back."""
    tag = uuid.uuid4().hex[:8]
    user = f"name-{tag}"
    async with transaction(sessions) as s:
        await ingest(s, _batch([{"type": "identify", "userId": user}]))
    hot = _tracks(user, f"{tag}-hot", 9)
    hot[6] = _refused_by_postgres(hot[6])
    resolving = _batch([{"type": "identify", "userId": f"{user}-{n}", "messageId": f"{tag}-res-{n}",
                         "traits": {"plan": "pro"}} for n in range(5)])
    resolving[2] = replace(resolving[2], traits={"plan": "nul \x00"})  # contacts.traits is jsonb too

    for batch, position in ((hot, 6), (resolving, 2)):
        with pytest.raises(Exception) as failed:
            async with transaction(sessions) as s:
                await ingest(s, batch)
        assert refused_value(failed.value)
        async with transaction(sessions) as s:
            problem = await refusal(s, batch, failed.value)
        assert isinstance(problem, InvalidEvent) and problem.status == 400
        assert f"Event {position} holds a value the event store refuses" in str(problem)
        assert "unsupported Unicode escape sequence" in str(problem)
    assert await _stored(sessions, [e.message_id for e in [*hot, *resolving]]) == {}
    async with sessions() as s:
        made = await s.scalar(text("SELECT count(*) FROM identities WHERE kind = 'user_id' AND value LIKE :u"),
                              {"u": f"{user}-%"})
    assert made == 0  # the probes' contacts and identities were rolled back with them
