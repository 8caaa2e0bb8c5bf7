"""The batching writer: concurrent postings grouped into one transaction each (as TigerBeetle batches).

One transaction per posting is bound by commit latency; here every caller awaits its own outcome while a
few writer tasks drain the queue, so under load a commit carries as many postings as are waiting.
Idempotency stays per posting: each request keeps its own reference and its own outcome. Each writer
task holds its own connection: a batch of credits is one autocommit call of `ledger_post_credits`
(one round trip, one commit); other kinds take a short explicit transaction. A batch that fails is halved
until what fails stands alone: a submission holding a value the database refuses gets its own refusal
(a DomainError naming its reference), and its neighbours post as if it had not been there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import DomainError, NotFound
from domain.ledger.postings import Kind, Request
from store.db import plain_url, refusal_reason, refused_value
from store.ledger.postings import RaceLost, apply_on
from store.ledger.receipts import Outcome, Receipt, Submission

Answer = Receipt | Exception  # a submission's outcome (a Receipt or a DomainError), or what failed it alone
RETRIES = 5
# A lost race on a reference, a deadlock, a dropped connection: nothing was committed, the batch is retried whole.
RETRYABLE = (RaceLost, psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected, psycopg.OperationalError)
SHARDS = 64


def utcnow() -> datetime:
    return datetime.now(UTC)


class PostingWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, writers: int = 2, max_batch: int = 512,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.sessions = sessions
        self.writers = writers
        self.max_batch = max_batch
        self.clock = clock
        self.queue: asyncio.Queue[tuple[Submission, asyncio.Future[Outcome]]] = asyncio.Queue()
        self.tasks: list[asyncio.Task[None]] = []
        self.programs: set[int] = set()
        self.batches = 0
        self.busy = 0.0  # seconds spent in batch calls (round trip and commit included), for the bench
        self.backends: list[int] = []  # Postgres backend pids of the writer connections, for the bench
        self._shard_base = os.getpid() % SHARDS  # other processes' writers mostly add to other shards

    async def __aenter__(self) -> PostingWriter:
        self.tasks = [asyncio.create_task(self._loop(i)) for i in range(self.writers)]
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.queue.join()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def post(self, program_id: int, request: Request) -> Receipt:
        """Post one request; raises the DomainError that refused it."""
        if program_id not in self.programs:
            await self._check_programs({program_id})
        # The common call: one future awaited directly (no list, no gather around it).
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((Submission(program_id, request), future))
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def post_many(self, subs: Sequence[Submission]) -> list[Outcome]:
        await self._check_programs({s.program_id for s in subs})
        loop = asyncio.get_running_loop()
        futures = []
        for sub in subs:
            future: asyncio.Future[Outcome] = loop.create_future()
            self.queue.put_nowait((sub, future))
            futures.append(future)
        return list(await asyncio.gather(*futures))

    async def _check_programs(self, ids: set[int]) -> None:
        unknown = ids - self.programs
        if not unknown:
            return
        async with self.sessions() as session:
            rows = await session.execute(text("SELECT id FROM ledger_programs WHERE id = ANY(:ids)"),
                                         {"ids": sorted(unknown)})
            self.programs |= {r.id for r in rows}
        if missing := unknown - self.programs:
            raise NotFound(f"points program(s) {sorted(missing)} do not exist")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        engine = self.sessions.kw["bind"]
        conn = await psycopg.AsyncConnection.connect(
            plain_url(engine.url.render_as_string(hide_password=False)), autocommit=True,
            application_name="nudge-ledger-writer")
        self.backends.append(conn.info.backend_pid)
        return conn

    async def _loop(self, index: int) -> None:
        shard = (self._shard_base + index) % SHARDS
        conn: psycopg.AsyncConnection[Any] | None = None
        # Connect now if the database answers (the bench reads the writers' backends from the start), else at the
        # first batch: a writer started during an outage must not die of it and leave its callers waiting.
        with contextlib.suppress(psycopg.OperationalError):
            conn = await self._connect()
        try:
            while True:
                batch = [await self.queue.get()]
                # Callers woken by the previous batch's answers are still queueing up in this turn of the
                # event loop: yield once so they join this batch instead of waiting a whole round trip.
                await asyncio.sleep(0)
                while len(batch) < self.max_batch and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                try:
                    # Consecutive credits go together (one round trip); other kinds keep their place in line.
                    for run in _runs(batch):
                        started = time.perf_counter()
                        try:
                            if conn is None or conn.closed:
                                conn = await self._connect()
                            conn, outcomes = await self._run(conn, [s for s, _ in run], shard)
                        except Exception as exc:  # noqa: BLE001 - the database is down (or a bug): this run's callers
                            for _, future in run:
                                if not future.done():
                                    future.set_exception(exc)
                            continue
                        self.busy += time.perf_counter() - started
                        for (_, future), outcome in zip(run, outcomes, strict=True):
                            if future.done():
                                continue
                            if isinstance(outcome, DomainError) or not isinstance(outcome, Exception):
                                future.set_result(outcome)  # a Receipt, or the rule that refused the posting
                            else:
                                future.set_exception(outcome)  # what failed this submission alone
                finally:
                    for _ in batch:
                        self.queue.task_done()
        finally:
            if conn is not None:
                await conn.close()

    async def _run(self, conn: psycopg.AsyncConnection[Any], subs: list[Submission],
                   shard: int) -> tuple[psycopg.AsyncConnection[Any], list[Answer]]:
        credits = all(s.request.kind is Kind.CREDIT for s in subs)
        for attempt in range(RETRIES):
            try:
                if credits:  # one statement: autocommit makes it its own transaction, one round trip
                    outcomes = await apply_on(conn, subs, now=self.clock(), shard=shard)
                else:
                    async with conn.transaction():
                        outcomes = await apply_on(conn, subs, now=self.clock(), shard=shard)
                self.batches += 1
                return conn, [*outcomes]
            except Exception as exc:
                # Nothing of the batch was committed, so retrying any part of it is safe.
                if conn.closed or conn.broken:
                    conn = await self._connect()
                if refused_value(exc):  # some submission's value: it fails again, alone, with its own refusal
                    if len(subs) == 1:
                        return conn, [DomainError(f"posting {subs[0].request.reference!r} holds a value the "
                                                  f"database refuses: {refusal_reason(exc)}")]
                    return await self._halves(conn, subs, shard)
                if not isinstance(exc, RETRYABLE) or attempt == RETRIES - 1:
                    # A lost race on a reference, a deadlock or a dropped connection every time, or an unexpected
                    # error: isolate whatever keeps failing so it cannot hold its neighbours hostage.
                    if len(subs) == 1:
                        raise
                    return await self._halves(conn, subs, shard)
                await asyncio.sleep(0.005 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _halves(self, conn: psycopg.AsyncConnection[Any], subs: list[Submission],
                      shard: int) -> tuple[psycopg.AsyncConnection[Any], list[Answer]]:
        """Each half of a failing batch posted apart, so only what fails alone fails (k bad of n cost about
        2·k·log2(n) tries): a failing half is halved again, down to single submissions. A half that fails
        for good (the connection is gone) answers its own callers with that error; the other keeps its answers."""
        half = len(subs) // 2
        answers: list[Answer] = []
        for part in (subs[:half], subs[half:]):
            try:
                conn, got = await self._run(conn, part, shard)
            except Exception as exc:  # noqa: BLE001 - handed to this half's callers
                got = [exc] * len(part)
            answers += got
        return conn, answers


def _runs(
    batch: list[tuple[Submission, asyncio.Future[Outcome]]],
) -> list[list[tuple[Submission, asyncio.Future[Outcome]]]]:
    runs: list[list[tuple[Submission, asyncio.Future[Outcome]]]] = []
    for item in batch:
        credit = item[0].request.kind is Kind.CREDIT
        if runs and (runs[-1][0][0].request.kind is Kind.CREDIT) == credit:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
