"""`nudge bench tasks`: events/s through the task progress engine with 50 active tasks, vs the ingest rate of the
same events measured in the same run.

Creates a points program and `tasks` active tasks over 25 event names (two per name, so every event advances two
tasks: plain counts with a daily threshold, CEL filters, CEL computes, streaks and ladders, daily periods in
Asia/Shanghai), identifies
`users` contacts (not timed), then:

1. ingest: `events` track events through the store's ingest path (`store.ingest.ingest`, what the API's batch
   endpoint calls, without HTTP) in batches of `batch`, one transaction each — the limit;
2. progress: the engine (`store.tasks.progress.process_batch`, what the `tasks-progress` workflow's activity runs)
   consumes those events from the outbox under its own cursor, `engine_batch` events per transaction (the
   consumer's default), to the end — the figure.

Everything the run wrote is removed (tasks, progress, grants, events, contacts, its cursor); the program stays.
Run it on an otherwise idle stack: a running `tasks-progress` consumer would also work on the bench's tasks.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.core import BenchContext, BenchResult
from domain.events import Event
from domain.tasks.lifecycle import TaskStatus
from store.db import make_engine, make_sessionmaker, plain_url, transaction
from store.events.outbox import Position, advance_cursor
from store.ingest import ingest
from store.ledger.programs import create_program
from store.tasks.definitions import create_task, set_status
from store.tasks.progress import Compiled, process_batch

DATABASE_ONLY = True
NAME = "tasks"
DESCRIPTION = "Events/s through the task progress engine with 50 active tasks vs the ingest rate of the same events"
PARAMS: dict[str, Any] = {"events": 100_000, "users": 5_000, "tasks": 50, "batch": 1000, "engine_batch": 5000,
                          "seconds": 60}
ACTIONS = 25  # 50 tasks over 25 event names: every event advances two tasks


def _task(tag: str, k: int, program_id: int) -> dict[str, Any]:
    action = f"bench{tag}_{k % ACTIONS}"
    base: dict[str, Any] = {"name": f"bench {tag} {k}", "user_action": action, "program_id": program_id,
                            "reward_count": 1, "period": {"kind": "daily", "zone": "Asia/Shanghai"}}
    shape = k % 5
    if shape == 0:
        return base | {"num": 3, "threshold": 20}                                   # like 3 → 1, ≤ 20 a day
    if shape == 1:
        return base | {"filter": "event.properties.amount >= 100", "reward_count": 20, "threshold": 1}  # 100+
    if shape == 2:
        return base | {"compute": "event.properties.amount / 100", "num": 10, "threshold": 5}
    if shape == 3:
        return base | {"kind": "streak", "streak_rewards": [5, 10, 15], "threshold": 1}
    return base | {"kind": "ladder", "ladder": [{"num": 1, "reward": 1}, {"num": 5, "reward": 3},
                                                {"num": 20, "reward": 10}]}


def _event(tag: str, n: int, user: int, at: datetime, rng: random.Random) -> Event:
    return Event(message_id=f"bench-{tag}-{n}", type="track", event=f"bench{tag}_{n % ACTIONS}",
                 user_id=f"bench-{tag}-{user}", anonymous_id=None, previous_id=None,
                 properties={"amount": rng.randrange(500), "sku": f"sku-{n % 97}"}, context={}, traits=None,
                 timestamp=at, received_at=at)


def _identify(tag: str, user: int, at: datetime) -> Event:
    return Event(message_id=f"bench-{tag}-id-{user}", type="identify", event=None, user_id=f"bench-{tag}-{user}",
                 anonymous_id=None, previous_id=None, properties={}, context={}, traits={"plan": "free"},
                 timestamp=at, received_at=at)


def _outbox_end(url: str) -> Position | None:
    with psycopg.connect(plain_url(url)) as conn:
        row = conn.execute("SELECT xid::text, id FROM event_outbox"
                           " ORDER BY event_outbox.xid DESC, id DESC LIMIT 1").fetchone()
    return Position(int(row[0]), row[1]) if row else None


def _cleanup(url: str, tag: str, task_ids: list[int], consumer: str) -> None:
    prefix = f"bench-{tag}-%"
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        for table in ("task_grants", "task_progress", "task_participants", "tasks"):
            conn.execute(f"DELETE FROM {table} WHERE {'id' if table == 'tasks' else 'task_id'} = ANY(%s)",
                         (task_ids,))
        conn.execute("DELETE FROM event_cursors WHERE consumer = %s", (consumer,))
        ids = [r[0] for r in conn.execute("SELECT contact_id FROM identities WHERE kind = 'user_id' AND value LIKE %s",
                                          (prefix,)).fetchall()]
        conn.execute("DELETE FROM event_outbox WHERE contact_ids && %s::bigint[]", (ids,))
        for table, column in (("events", "contact_id"), ("contact_event_daily", "contact_id"),
                              ("identities", "contact_id"), ("contacts", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", (ids,))
        conn.execute("DELETE FROM event_dedupe WHERE message_id LIKE %s", (prefix,))


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    url = ctx.settings.database_url or ""
    tag = uuid.uuid4().hex[:8]
    consumer = f"bench-tasks-{tag}"
    engine = make_engine(url, pool_size=2)
    sessions = make_sessionmaker(engine)
    task_ids: list[int] = []
    try:
        now = datetime.now(UTC)
        async with transaction(sessions) as s:
            program = await create_program(s, name=f"bench tasks {tag}", unit="points", expiry_months=None,
                                           retention_months=12)
            for k in range(p["tasks"]):
                task = await create_task(s, _task(tag, k, program.id))
                await set_status(s, task.id, TaskStatus.APPROVED, now=now)
                await set_status(s, task.id, TaskStatus.ACTIVE, now=now)
                task_ids.append(task.id)
        with ctx.status(f"Identifying {p['users']:,} contacts (not timed)…"):
            for lo in range(0, p["users"], p["batch"]):
                async with transaction(sessions) as s:
                    await ingest(s, [_identify(tag, u, now) for u in range(lo, min(lo + p["batch"], p["users"]))])
        end = _outbox_end(url)
        if end is not None:
            async with transaction(sessions) as s:
                await advance_cursor(s, consumer, end)
        rng = random.Random(7)
        start = now - timedelta(days=3)
        batches = [[_event(tag, n, rng.randrange(p["users"]), start + timedelta(seconds=n * 2), rng)
                    for n in range(lo, min(lo + p["batch"], p["events"]))] for lo in range(0, p["events"], p["batch"])]

        with ctx.status(f"Ingesting {p['events']:,} events in batches of {p['batch']} (the limit)…"):
            started = time.perf_counter()
            sent = 0
            for batch in batches:
                async with transaction(sessions) as s:
                    await ingest(s, batch)
                sent += len(batch)
                if time.perf_counter() - started > p["seconds"]:
                    break
            ingest_rate = sent / (time.perf_counter() - started)
        ctx.console.print(f"ingest: {sent:,} events at {ingest_rate:,.0f} events/s")

        compiled = Compiled()
        done = matched = rewards = batches_run = 0
        with ctx.status(f"Advancing {p['tasks']} tasks over those events…"):
            started = time.perf_counter()
            while True:
                async with transaction(sessions) as s:
                    result = await process_batch(s, compiled, now=datetime.now(UTC), limit=p["engine_batch"],
                                                 consumer=consumer)
                if not result.events:
                    break
                done, matched, rewards = done + result.events, matched + result.matched, rewards + result.rewards
                batches_run += 1
            elapsed = time.perf_counter() - started
        rate = done / elapsed if elapsed else 0.0
        ctx.console.print(f"progress engine: {done:,} events in {elapsed:.1f} s = {rate:,.0f} events/s")
    finally:
        await engine.dispose()
        with ctx.status("Cleaning up…"):
            await asyncio.to_thread(_cleanup, url, tag, task_ids, consumer)
    return BenchResult(bench=NAME, value=rate, unit="events/s", limit_name="ingest", limit=ingest_rate, params=p,
                       rows=[("events through the engine", f"{done:,}"), ("seconds", f"{elapsed:.1f}"),
                             ("(event, task) matches", f"{matched:,}"), ("rewards granted", f"{rewards:,}"),
                             ("engine batches", f"{batches_run:,}"), ("active tasks", str(p["tasks"]))])
