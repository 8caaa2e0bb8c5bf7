"""Batch ingest, the use case: store a batch of events, resolving identities (and merging contacts) when it has
to, plus the `BatchWriter` that groups concurrent requests' plain batches onto a few autocommit connections.

Plain events for known people take the hot path: one statement (`store.events.insert`). A batch that creates,
links or describes identities, or names someone new, takes the resolving path in one transaction: drop what
was already stored, resolve identities (merging contacts through `store.merges`), then the same statement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy.ext.asyncio import AsyncSession

from domain.events import Event, needs_resolution
from store.contacts import identities
from store.db import driver
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


class BatchWriter:
    """Hot-path writer: concurrent requests' batches are grouped (up to `max_events`) into one statement
    on one of `connections` autocommit connections, so Postgres pays per-statement and per-commit costs
    (parse, plan, WAL flush) once per group instead of once per request. Each request still gets its
    own answer, and nothing is answered before its statement has committed."""

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
        while True:
            group = [await queue.get()]
            size = len(group[0][0])
            while size < self.max_events and not queue.empty():
                group.append(queue.get_nowait())
                size += len(group[-1][0])
            try:
                if conn is None or conn.closed:
                    conn = await connect_writer(self.url)
                results = await ingest_known(conn, [events for events, _ in group])
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                if conn is not None and not conn.closed and conn.info.transaction_status != 0:
                    await conn.close()
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for (_, done), result in zip(group, results, strict=True):
                if not done.done():
                    done.set_result(result)
