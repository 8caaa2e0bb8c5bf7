"""Archiving against a move in progress: contacts a move has locked are ended where the move leaves them once it
commits, and a consumer that reads the journey while an archive is open waits for it and enters nobody."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.journeys import definitions, runtime
from store.journeys.runtime import State, save_states

NOW = datetime.now(UTC)


async def _journey(sessions: async_sessionmaker[AsyncSession], event: str) -> int:
    async with transaction(sessions) as s:
        jid = (await definitions.create_journey(s, f"archive-{event}", {"nodes": [
            {"id": "start", "type": "trigger", "event": event, "next": "minute"},
            {"id": "minute", "type": "wait", "seconds": 60, "next": "week"},
            {"id": "week", "type": "wait", "seconds": 7 * 86400, "next": "done"},
            {"id": "done", "type": "exit"}]})).id
        await definitions.publish(s, jid)
    return jid


async def _blocked(sessions: async_sessionmaker[AsyncSession], pid: int) -> None:
    """Until the backend `pid` waits for a lock."""
    for _ in range(200):
        async with sessions() as s:
            waits = await s.scalar(text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": pid})
        if waits == "Lock":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"backend {pid} never waited for a lock")


async def _archive(sessions: async_sessionmaker[AsyncSession], jid: int, pid: asyncio.Future[int]) -> None:
    async with transaction(sessions) as s:
        pid.set_result(int(await s.scalar(text("SELECT pg_backend_pid()")) or 0))
        await definitions.change_status(s, jid, "archive")


async def test_contacts_a_move_holds_are_ended_where_the_move_leaves_them(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    jid = await _journey(sessions, f"held_{uuid.uuid4().hex[:8]}")
    contacts = [random.randrange(10**12, 10**13) for _ in range(2)]
    async with transaction(sessions) as s:
        await save_states(s, jid, [State(c, 1, 1, "minute", "sleeping", NOW - timedelta(seconds=1), None, {}, NOW)
                                   for c in contacts], NOW)
    async with sessions() as move:
        assert (await runtime.advance_due(move, jid, NOW)).contacts == 2  # locked, on to `week`, not committed
        pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        archiving = asyncio.create_task(_archive(sessions, jid, pid))
        await _blocked(sessions, await pid)
        await move.commit()
    await archiving
    async with sessions() as s:
        rows = list(await s.execute(text("""
            SELECT node, status, exit_reason, wake_at FROM journey_states WHERE journey_id = :j
        """), {"j": jid}))
        history = list(await s.execute(text("""
            SELECT node, outcome, reason FROM journey_history WHERE journey_id = :j AND contact_id = :c ORDER BY id
        """), {"j": jid, "c": contacts[0]}))
    assert rows == [("week", "exited", "archived", None)] * 2
    assert history == [("minute", "woke", None), ("week", "entered", None), ("week", "exited", "archived")]
    async with sessions() as s:
        assert (await definitions.get_journey(s, jid)).counts["week"] == {"entered": 2, "exited": 2}


async def test_a_consumer_waits_for_an_archive_in_progress_and_enters_nobody(
        sessions: async_sessionmaker[AsyncSession], ingest: httpx.AsyncClient) -> None:
    event = f"late_{uuid.uuid4().hex[:8]}"
    jid = await _journey(sessions, event)
    assert (await ingest.post("/v1/track", json={"userId": f"{event}-u", "event": event})).status_code == 200
    for _ in range(100):  # until the ingest writer has committed it: a consumer would enter its contact now
        async with sessions() as s:
            if await s.scalar(text("SELECT count(*) FROM events WHERE event = :e"), {"e": event}):
                break
        await asyncio.sleep(0.05)
    async with sessions() as archive:
        await definitions.change_status(archive, jid, "archive")  # holds the journey row, not committed
        async with sessions() as s:
            pid = int(await s.scalar(text("SELECT pg_backend_pid()")) or 0)
            consuming = asyncio.create_task(runtime.consume(s, jid, 1, NOW))
            await _blocked(sessions, pid)
            await archive.commit()
            consumed = await consuming
    assert (consumed.events, consumed.entered) == (0, 0)
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM journey_states WHERE journey_id = :j"), {"j": jid}) == 0
