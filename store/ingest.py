"""Batch ingest, the use case: store a batch of events, resolving identities (and merging contacts) when it has
to, plus the `BatchWriter` that groups concurrent requests' plain batches onto a few autocommit connections.

Plain events for known people take the hot path: one statement (`store.events.insert`). A batch that creates,
links or describes identities, or names someone new, takes the resolving path in one transaction: drop what
was already stored, resolve identities (merging contacts through `store.merges`), then the same statement.
A batch holding a value the database refuses fails alone, with an `InvalidEvent` naming the event (`refusal`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from sqlalchemy.ext.asyncio import AsyncSession

from domain.events import Event, InvalidEvent, needs_resolution
from store.contacts import identities
from store.db import driver, refusal_reason, refused_value, unavailable
from store.events.insert import IdentityRace, IngestResult, connect_writer, distinct, ingest_known, unseen, write
from store.merges import merge_contacts

Waiting = tuple[list[Event], asyncio.Future[IngestResult | None]]  # a batch and where its answer goes


async def ingest(session: AsyncSession, events: Sequence[Event]) -> IngestResult:
    """Write a batch in the caller's transaction. Batches that create, link or describe identities are resolved
    first; plain events for known identities go straight to the one statement."""
    if not events:
        return IngestResult(0, 0)
    batch = distinct(events)
    pg = await driver(session)
    if not needs_resolution(batch):
        all_known, stored = await write(pg, batch)
        if all_known:
            return IngestResult(received=len(events), inserted=len(stored))
    # A replay must not re-create an erased contact or re-apply old traits: drop what was seen first.
    batch = await unseen(pg, batch)
    if not batch:
        return IngestResult(received=len(events), inserted=0)
    await identities.apply(session, batch, merge=merge_contacts)
    all_known, stored = await write(pg, batch)
    if not all_known:
        raise IdentityRace("an identity was removed while this batch was being stored")
    return IngestResult(received=len(events), inserted=len(stored))


async def refusal(session: AsyncSession, events: Sequence[Event], exc: BaseException) -> InvalidEvent:
    """The 400 for a batch that failed with `exc`, a value the database refused (`store.db.refused_value`),
    naming the event that holds it. The event is found by halving: each try stores a part of the batch in a
    savepoint that is rolled back, so nothing stays (about 2·log2(n) tries, on the failing path only)."""
    found = await _refused_event(session, events)
    at, reason = found if found is not None else (None, refusal_reason(exc))
    what = "The event" if len(events) == 1 else "This batch" if at is None else f"Event {at}"
    return InvalidEvent(f"{what} holds a value the event store refuses ({reason}); nothing of this "
                        f"{'call' if len(events) == 1 else 'batch'} was stored. Fix or drop it and send again.")


async def _refused_event(session: AsyncSession, events: Sequence[Event]) -> tuple[int, str] | None:
    """(position, reason) of an event refused when stored alone, or None when none is."""
    lo, hi, reason = 0, len(events), None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (why := await _refused(session, events[lo:mid])) is not None:
            hi, reason = mid, why
        elif (why := await _refused(session, events[mid:hi])) is not None:
            lo, reason = mid, why
        else:
            return None  # refused only together: no single event to name
    if reason is None and hi > lo:
        reason = await _refused(session, events[lo:hi])
    return (lo, reason) if reason is not None else None


async def _refused(session: AsyncSession, events: Sequence[Event]) -> str | None:
    """Why the database refuses these events, or None if it takes them; either way nothing is kept."""
    savepoint = await session.begin_nested()
    try:
        await ingest(session, events)
    except Exception as exc:
        if unavailable(exc):
            raise
        return refusal_reason(exc) if refused_value(exc) else None  # a race is no reason to name an event
    finally:
        await savepoint.rollback()
    return None


class BatchWriter:
    """Hot-path writer: concurrent requests' batches are grouped (up to `max_events`) into one statement
    on one of `connections` autocommit connections, so Postgres pays per-statement and per-commit costs
    (parse, plan, WAL flush) once per group instead of once per request. Each request still gets its
    own answer, and nothing is answered before its statement has committed. One request's failure stays its
    own: a group that fails for any reason but a lost connection is split until the failing batch stands alone."""

    def __init__(self, url: str, *, connections: int = 4, max_events: int = 2000) -> None:
        self.url, self.connections, self.max_events = url, connections, max_events
        self.queue: asyncio.Queue[Waiting] | None = None
        self.tasks: list[asyncio.Task[None]] = []

    async def write(self, events: list[Event]) -> IngestResult | None:
        """The batch's result, or None when it needs `ingest` (identities to resolve)."""
        if self.queue is None:
            self.queue = asyncio.Queue()
            self.tasks = [asyncio.create_task(self._run(self.queue)) for _ in range(self.connections)]
        done: asyncio.Future[IngestResult | None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((events, done))
        return await done

    async def _run(self, queue: asyncio.Queue[Waiting]) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                group = [await queue.get()]
                size = len(group[0][0])
                while size < self.max_events and not queue.empty():
                    group.append(queue.get_nowait())
                    size += len(group[-1][0])
                conn = await self._write(conn, group)
        finally:
            if conn is not None:
                await conn.close()

    async def close(self) -> None:
        """Stop the writer tasks and close their connections, once no request is waiting (tests, shutdown)."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks, self.queue = [], None

    async def _write(self, conn: psycopg.AsyncConnection[Any] | None,
                     group: list[Waiting]) -> psycopg.AsyncConnection[Any] | None:
        """Store a group and answer each of its requests. A failure that is not the connection's belongs to
        some batch (a value the database refuses, a race): the group is halved and each half written apart,
        until each failing batch stands alone and gets its own error while its neighbours are stored."""
        try:
            if conn is None or conn.closed:
                conn = await connect_writer(self.url)
            results = await ingest_known(conn, [events for events, _ in group])
        except Exception as exc:  # noqa: BLE001 - answered below, to its own request(s)
            if conn is not None and not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                await conn.close()
            if len(group) > 1 and not unavailable(exc):
                half = len(group) // 2
                conn = await self._write(conn, group[:half])
                return await self._write(conn, group[half:])
            for _, done in group:  # one batch's own failure, or a lost connection every request retries
                if not done.done():
                    done.set_exception(exc)
            return conn
        for (_, done), result in zip(group, results, strict=True):
            if not done.done():
                done.set_result(result)
        return conn
