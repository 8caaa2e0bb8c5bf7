"""`nudge bench segments`: a rule count on `contacts` contacts and `events` events.

Works in a scratch database on the configured server (created, migrated, dropped at the end). Contacts,
events and their daily aggregates are generated set-based with generate_series. Then it times the count
of a 3-condition rule with one event aggregate through PostgresSegmentIndex (median of `repeat` warm
runs), beside the physical limit: a bare `count(*)` over all contacts (one scan, no rule). It then saves
the rule as a segment (one set-based full refresh, timed) and times the materialised count the API
serves (GET /v1/segments/{id}/count). The same rule is counted by the Elasticsearch index
(ELASTICSEARCH_URL, or a noida-db started here) over the first `es_contacts` contacts, and by Postgres
over the same subset for comparison.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from sqlalchemy import text

from bench.core import BenchContext, BenchResult
from domain.segments.rules import MAX_WINDOW_COUNT, All, Condition, FieldRef, Node, parse_rule
from nudge.embedded import free_port
from store.db import make_engine, make_sessionmaker, plain_url, transaction
from store.migrate import upgrade
from store.segments.definitions import create_segment
from store.segments.index import PostgresSegmentIndex
from store.segments.membership import member_count
from store.segments.refresh import ROLLUP, refresh_segment

DATABASE_ONLY = True
NAME = "segments"
DESCRIPTION = ("Count of a 3-condition rule with one event aggregate on 1M contacts / 20M events (ms), "
               "Postgres and Elasticsearch")
PARAMS: dict[str, Any] = {"contacts": 1_000_000, "events": 20_000_000, "days": 90, "repeat": 5,
                          "es_contacts": 20_000, "chunk": 2_000_000}

RULE = {"and": [
    {"field": "traits.plan", "op": "eq", "value": "pro"},
    {"field": "created_at", "op": "within_last", "value": "180d"},
    {"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 2}},
]}
EVENT_NAMES = ["app_open", "page_view", "search", "add_to_cart", "order_paid", "login", "share", "review",
               "wishlist", "logout"]


def _scratch(url: str) -> tuple[str, str, str]:
    base = plain_url(url).rsplit("/", 1)[0]
    name = f"nudge_bench_segments_{uuid.uuid4().hex[:8]}"
    return f"{base}/postgres", name, f"{base}/{name}"


EVENTS_SQL = """
INSERT INTO events (contact_id, message_id, type, event, properties, timestamp)
SELECT c, 'b' || c || '-' || k, 'track', (%(names)s::text[])[1 + floor(random() * 10)::int],
       jsonb_build_object('amount', floor(random() * 500)::int), now() - random() * make_interval(days => %(days)s)
FROM generate_series(%(first)s::bigint, %(last)s::bigint) c
CROSS JOIN LATERAL generate_series(1, 1 + (hashint8(c) & 1023) %% (2 * %(per)s - 1)) k
ORDER BY c
"""
DAILY_SQL = """
INSERT INTO contact_event_daily (contact_id, event, day, count, first_at, last_at)
SELECT contact_id, event, (timestamp AT TIME ZONE 'UTC')::date, count(*), min(timestamp), max(timestamp)
FROM events_p{i} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
# Secondary indexes are built once after the load (a sorted build), not row by row; same final schema.
DEFERRED_INDEXES = {
    "ix_events_contact_event_timestamp": "CREATE INDEX ix_events_contact_event_timestamp ON events"
                                         " (contact_id, event, timestamp)",
    "ix_contact_event_recent_d1": "CREATE INDEX ix_contact_event_recent_d1 ON contact_event_recent"
                                  " (event, d1, contact_id)",
    "ix_contact_event_recent_d2": "CREATE INDEX ix_contact_event_recent_d2 ON contact_event_recent"
                                  " (event, d2, contact_id) WHERE d2 IS NOT NULL",
    "ix_contact_event_recent_d3": "CREATE INDEX ix_contact_event_recent_d3 ON contact_event_recent"
                                  " (event, d3, contact_id) WHERE d3 IS NOT NULL",
    "ix_contact_event_recent_total": "CREATE INDEX ix_contact_event_recent_total ON contact_event_recent"
                                     " (event, total, contact_id)",
}


def _parallel(jobs: list[Any], run_one: Any, workers: int = 2) -> None:
    threads = [threading.Thread(target=lambda part=jobs[i::workers]: [run_one(j) for j in part])
               for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _generate(url: str, contacts: int, events: int, days: int, chunk: int, ctx: BenchContext) -> int:
    """Contacts, events in contact order, daily aggregates per partition, then the deferred indexes; from
    two connections (the machine's two cores). The scratch event tables are unlogged."""
    per = max(1, round(events / contacts))
    step = max(1000, chunk // per)
    with psycopg.connect(url, autocommit=True) as pg, ctx.progress() as progress:
        for table in (f"{t}_p{i}" for t in ("events", "contact_event_daily", "contact_event_recent") for i in range(8)):
            pg.execute(f"ALTER TABLE {table} SET UNLOGGED")
        for name in DEFERRED_INDEXES:
            pg.execute(f"DROP INDEX {name}")
        task = progress.add_task("contacts", total=contacts)
        for start in range(1, contacts + 1, 200_000):
            end = min(start + 199_999, contacts)
            pg.execute("""
                INSERT INTO contacts (user_id, email, traits, created_at, updated_at)
                SELECT 'u' || g, 'u' || g || '@example.com',
                       jsonb_build_object('plan', (ARRAY['pro','free','team','free'])[1 + g %% 4],
                                          'age', 18 + g %% 60,
                                          'country', (ARRAY['CN','US','DE','BR','IN'])[1 + g %% 5]),
                       now() - make_interval(days => ((g * 7919) %% 365)::int), now()
                FROM generate_series(%s::bigint, %s::bigint) g
            """, (start, end))
            progress.update(task, advance=end - start + 1)

        def connect() -> psycopg.Connection[Any]:
            conn = psycopg.connect(url, autocommit=True)
            conn.execute("SET synchronous_commit = off")
            return conn

        task = progress.add_task(f"events (~{per}/contact)", total=contacts)

        def events_range(bounds: tuple[int, int]) -> None:
            with connect() as conn:
                conn.execute(EVENTS_SQL, {"names": EVENT_NAMES, "first": bounds[0], "last": bounds[1], "per": per,
                                          "days": days})
            progress.update(task, advance=bounds[1] - bounds[0] + 1)

        _parallel([(a, min(a + step - 1, contacts)) for a in range(1, contacts + 1, step)], events_range)
        task = progress.add_task("daily aggregates", total=8)

        def daily(i: int) -> None:
            with connect() as conn:
                conn.execute(DAILY_SQL.format(i=i))
            progress.update(task, advance=1)

        _parallel(list(range(8)), daily)
        task = progress.add_task("segment rollup (contact_event_recent)", total=8)

        def rollup(i: int) -> None:
            sql = ROLLUP.format(k=MAX_WINDOW_COUNT + 1, scope="true")
            with connect() as conn:
                conn.execute(sql.replace("FROM contact_event_daily d", f"FROM contact_event_daily_p{i} d"))
            progress.update(task, advance=1)

        _parallel(list(range(8)), rollup)
        task = progress.add_task("indexes", total=len(DEFERRED_INDEXES))

        def index(sql: str) -> None:
            with connect() as conn:
                conn.execute(sql)
            progress.update(task, advance=1)

        _parallel(list(DEFERRED_INDEXES.values()), index)
        with ctx.status("VACUUM ANALYZE"):
            pg.execute("VACUUM ANALYZE")
        return int(pg.execute("SELECT count(*) FROM events").fetchone()[0])  # type: ignore[index]


async def _time(fn: Any, repeat: int) -> tuple[float, Any]:
    result, times = None, []
    for _ in range(repeat + 1):  # the first run warms caches and is not counted
        started = time.perf_counter()
        result = await fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:]), result


def _start_noida(ctx: BenchContext) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    data = ctx.settings.home / "bench-noida"
    noida = shutil.which("noida-db") or str(Path(sys.executable).parent / "noida-db")
    proc = subprocess.Popen([noida, "start", "--data-dir", str(data), "--host", "127.0.0.1", "--only",
                             "elasticsearch", "--elasticsearch-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError("noida-db did not start")


async def run(ctx: BenchContext, *, contacts: int, events: int, days: int, repeat: int, es_contacts: int,
              chunk: int) -> BenchResult:
    admin, name, url = _scratch(ctx.settings.database_url or "")
    with psycopg.connect(admin, autocommit=True) as pg:
        pg.execute(f'CREATE DATABASE "{name}"')
    engine = make_engine(url, pool_size=2)
    noida = None
    rows: list[tuple[str, str]] = []
    try:
        with ctx.status(f"Creating and migrating the scratch database {name}"):
            upgrade(url)
        started = time.perf_counter()
        generated = _generate(url, contacts, events, days, chunk, ctx)
        rows += [("events generated", f"{generated:,}"), ("generate (s)", f"{time.perf_counter() - started:,.1f}")]
        sessions = make_sessionmaker(engine)
        rule, now, index = parse_rule(RULE), datetime.now(UTC), PostgresSegmentIndex()
        async with sessions() as s:
            async def count(node: Node = rule) -> int:
                return await index.count(s, node, now)

            pg_ms, members = await _time(count, repeat)
            limit_ms, _ = await _time(lambda: s.scalar(text("SELECT count(*) FROM contacts")), repeat)
        rows += [("matching contacts", f"{members:,}"), ("limit: count(*) over contacts (ms)", f"{limit_ms:,.1f}")]
        async with transaction(sessions) as s:
            segment = await create_segment(s, name="bench", kind="rule", rule=RULE)
            started = time.perf_counter()
            with ctx.status("Saving the rule as a segment (one full refresh)"):
                changes = await refresh_segment(s, segment, now)
            refresh_s = time.perf_counter() - started
        async with sessions() as s:
            stored_ms, stored = await _time(lambda: member_count(s, segment.id), repeat)
        assert stored == members == changes.entered
        rows += [("full refresh of the saved segment (s)", f"{refresh_s:,.2f}"),
                 ("count of the saved segment, materialised (ms)", f"{stored_ms:,.1f}")]
        if es_contacts:
            es_url = ctx.settings.elasticsearch_url
            if not es_url:
                es_url, noida = _start_noida(ctx)
            rows += await _elasticsearch(ctx, sessions, es_url, rule, now, min(es_contacts, contacts), repeat,
                                         "Elasticsearch" if noida is None else "noida-db")
        return BenchResult(bench=NAME, value=pg_ms, unit="ms", limit_name="count(*) over all contacts",
                           limit=limit_ms, rows=rows,
                           params={"contacts": contacts, "events": events, "days": days, "repeat": repeat,
                                   "es_contacts": es_contacts})
    finally:
        await engine.dispose()
        if noida is not None:
            os.killpg(noida.pid, signal.SIGTERM)
        with ctx.status("Dropping the scratch database"), psycopg.connect(admin, autocommit=True) as pg:
            pg.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _elasticsearch(ctx: BenchContext, sessions: Any, es_url: str, rule: Node, now: datetime, n: int,
                         repeat: int, label: str) -> list[tuple[str, str]]:
    from store.segments.es import ElasticsearchSegmentIndex

    es = ElasticsearchSegmentIndex(es_url, index=f"nudge-bench-{uuid.uuid4().hex[:8]}")
    subset = All((Condition(FieldRef("contact", ("id",), "number"), "lte", n), rule))
    try:
        async with sessions() as s:
            ids = list((await s.scalars(text("SELECT id FROM contacts ORDER BY id LIMIT :n"), {"n": n})).all())
            started = time.perf_counter()
            with ctx.progress() as progress:
                task = progress.add_task(f"bulk index into {label}", total=len(ids))
                await es.index_contacts(s, ids, rules=[rule],
                                        progress=lambda k: progress.update(task, advance=k))
            rate = len(ids) / (time.perf_counter() - started)
            es_ms, es_members = await _time(lambda: es.count(s, subset, now), repeat)
            pg_ms, pg_members = await _time(lambda: PostgresSegmentIndex().count(s, subset, now), repeat)
        assert es_members == pg_members, f"{label} counted {es_members}, Postgres {pg_members}"
        return [(f"{label}: bulk index (docs/s)", f"{rate:,.0f}"),
                (f"{label}: count on first {n:,} contacts (ms)", f"{es_ms:,.1f}"),
                (f"postgres: count on first {n:,} contacts (ms)", f"{pg_ms:,.1f}"),
                ("matching in subset (both)", f"{es_members:,}")]
    finally:
        await es.drop()
        await es.close()
