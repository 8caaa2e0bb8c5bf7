"""`nudge bench ingest`: Segment batches through HTTP into Postgres vs raw COPY into the same events table.

Starts the API with uvicorn on 127.0.0.1 in a child process, identifies `users` contacts (warm-up, not
timed), then sends track batches of `batch` events from `clients` concurrent keep-alive HTTP/1.1
connections for at most `events` events or `seconds`. The client is a few lines of asyncio streams over
pre-encoded bodies so that it takes as little of the machine's CPU from the server as possible.

`batch_users=0` (the default, and the figure we report) mixes random users in every batch, what a server-side
library sends: each event touches its own contact row and aggregate row, the most work per event.
`batch_users=N` gives each batch N users, what device SDKs send (a session's events), so per-contact
rows are shared within a batch. Everything the run wrote (contacts, identities, events, aggregates, dedupe
and outbox rows) is removed.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
import uuid
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg

from bench.core import BenchContext, BenchResult, tree_cpu
from domain.keys import Scope
from nudge.embedded import free_port
from store import keys
from store.db import make_engine, make_sessionmaker, plain_url, transaction

DATABASE_ONLY = True  # the API server it starts is told that Temporal and SMTP are elsewhere
NAME = "ingest"
DESCRIPTION = "Segment batches of 100 through HTTP (events/s) vs raw COPY rows/s into the same events table"
PARAMS: dict[str, Any] = {"events": 400_000, "seconds": 30, "batch": 100, "clients": 8, "users": 20_000,
                          "workers": 1, "copy_rows": 200_000, "batch_users": 0}

EVENTS = ("app_open", "page_view", "add_to_cart", "order_paid", "search")


def _track(tag: str, user: int, n: int, at: datetime) -> dict[str, Any]:
    return {"type": "track", "userId": f"bench-{tag}-{user}", "event": EVENTS[n % len(EVENTS)],
            "messageId": f"bench-{tag}-{n}", "timestamp": at.isoformat(),
            "properties": {"amount": n % 500, "sku": f"sku-{n % 97}", "currency": "CNY"},
            "context": {"library": {"name": "nudge-bench", "version": "1"}, "ip": "203.0.113.7",
                        "userAgent": "Mozilla/5.0 (bench)"}}


def _request(path: str, token: str, body: bytes) -> bytes:
    auth = b64encode(f"{token}:".encode()).decode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _client(port: int, requests: asyncio.Queue[tuple[bytes, int]], counts: list[int],
                  deadline: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            try:
                payload, n = requests.get_nowait()
            except asyncio.QueueEmpty:
                return
            writer.write(payload)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"ingest answered {status.decode().strip()}: {body[:300]!r}")
            counts[0] += n
    finally:
        writer.close()


def _start_server(ctx: BenchContext, port: int, workers: int) -> subprocess.Popen[bytes]:
    s = ctx.settings
    env = os.environ | {"DATABASE_URL": s.database_url or "", "SMTP_URL": s.smtp_url or "smtp://127.0.0.1:1",
                        "TEMPORAL_ADDRESS": s.temporal_address or "127.0.0.1:1", "NUDGE_LOG_LEVEL": "warning"}
    cmd = [sys.executable, "-m", "uvicorn", "nudge.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(cmd, env=env)


async def _wait_up(port: int, server: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            if server.poll() is not None:
                raise RuntimeError("the API server exited; see its output above")
            try:
                # Only Postgres matters here (this bench may run without Temporal, which /healthz reports as 503).
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).json().get("database") == "ok":
                    return
            except (httpx.HTTPError, ValueError):  # not listening yet, or not answering JSON yet
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the API server did not start within 30 s")


async def _send(port: int, bodies: list[tuple[bytes, int]], clients: int, seconds: float) -> tuple[int, float]:
    queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)
    counts = [0]
    started = time.perf_counter()
    await asyncio.gather(*(_client(port, queue, counts, started + seconds) for _ in range(clients)))
    return counts[0], time.perf_counter() - started


def _postmaster(url: str) -> int | None:
    """The local Postgres server's pid, to count its CPU; None when Postgres runs elsewhere."""
    with psycopg.connect(plain_url(url)) as conn:  # read /proc while the backend still exists
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        try:
            with open(f"/proc/{backend}/stat") as f:
                return int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None


def _outbox_id(url: str) -> int:
    with psycopg.connect(plain_url(url)) as conn:
        return int(conn.execute("SELECT coalesce(max(id), 0) FROM event_outbox").fetchone()[0])  # type: ignore[index]


def _copy_rate(url: str, contact_ids: list[int], rows: int, tag: str) -> float:
    """Raw COPY of event-shaped rows into the same partitioned events table (PK and index included)."""
    props = orjson.dumps({"amount": 1, "sku": "sku-1", "currency": "CNY"}).decode()
    context = orjson.dumps({"library": {"name": "nudge-bench"}, "ip": "203.0.113.7"}).decode()
    now = datetime.now(UTC)
    with psycopg.connect(plain_url(url)) as conn:
        start_id = conn.execute("SELECT nextval('events_id_seq')").fetchone()[0]  # type: ignore[index]
        conn.execute("SELECT setval('events_id_seq', %s)", (start_id + rows + 1,))
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
                "COPY events (contact_id, id, message_id, type, event, properties, context, timestamp, received_at)"
                " FROM STDIN") as copy:
            for i in range(rows):
                copy.write_row((contact_ids[i % len(contact_ids)], start_id + i, f"copy-{tag}-{i}", "track",
                                EVENTS[i % 5], props, context, now, now))
        conn.commit()
        return rows / (time.perf_counter() - started)


def _vacuum(url: str) -> None:
    """Freshly written rows get their hint bits and visibility set by the first pass over them; without this,
    the timed phase would pay for the warm-up's rows and earlier runs' deletions (autovacuum counts as Postgres)."""
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) contacts, identities, events, event_dedupe, contact_event_daily, event_outbox")


def _cleanup(url: str, tag: str) -> None:
    prefix = f"bench-{tag}-%"
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT contact_id FROM identities WHERE kind = 'user_id' AND value LIKE %s",
                                          (prefix,)).fetchall()]
        conn.execute("DELETE FROM event_outbox WHERE contact_ids && %s::bigint[]", (ids,))
        for table, column in (("events", "contact_id"), ("contact_event_daily", "contact_id"),
                              ("identities", "contact_id"), ("contacts", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} = ANY(%s)", (ids,))
        conn.execute("DELETE FROM event_dedupe WHERE message_id LIKE %s", (prefix,))
        conn.execute("DELETE FROM api_keys WHERE name = %s", (f"bench ingest {tag}",))


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    url = ctx.settings.database_url or ""
    tag = uuid.uuid4().hex[:8]
    engine = make_engine(url, pool_size=2)
    async with transaction(make_sessionmaker(engine)) as s:
        token = (await keys.create_key(s, f"bench ingest {tag}", [Scope.INGEST])).token
    await engine.dispose()
    port = free_port()
    server = _start_server(ctx, port, p["workers"])
    try:
        await _wait_up(port, server)
        warm = [orjson.dumps({"batch": [{"type": "identify", "userId": f"bench-{tag}-{u}",
                                         "messageId": f"bench-{tag}-id-{u}", "traits": {"plan": "free"}}
                                        for u in range(lo, min(lo + p["batch"], p["users"]))]})
                for lo in range(0, p["users"], p["batch"])]
        with ctx.status(f"Identifying {p['users']:,} contacts (warm-up, not timed)…"):
            await _send(port, [(_request("/v1/batch", token, b), 0) for b in warm], p["clients"], 600)

        with ctx.status("Vacuuming what the warm-up and earlier runs left (as pgbench -i does; not timed)…"):
            await asyncio.to_thread(_vacuum, url)
        rng = random.Random(7)
        start = datetime.now(UTC) - timedelta(days=30)
        bodies = []
        for lo in range(0, p["events"], p["batch"]):
            size = min(p["batch"], p["events"] - lo)
            people = [rng.randrange(p["users"]) for _ in range(p["batch_users"])]
            items = [_track(tag, people[n % len(people)] if people else rng.randrange(p["users"]), n,
                            start + timedelta(seconds=n)) for n in range(lo, lo + size)]
            bodies.append((_request("/v1/batch", token, orjson.dumps({"batch": items})), size))
        postmaster = _postmaster(url)
        outbox_before = _outbox_id(url)
        cpu_before = (tree_cpu(server.pid), tree_cpu(postmaster) if postmaster else 0.0, time.process_time())
        with ctx.status(f"Sending up to {p['events']:,} events in batches of {p['batch']} from "
                        f"{p['clients']} clients (≤ {p['seconds']} s)…"):
            sent, elapsed = await _send(port, bodies, p["clients"], p["seconds"])
        rate = sent / elapsed
        statements = max(_outbox_id(url) - outbox_before, 1)  # one outbox row per ingest statement
        cpu = [(after - before) / max(sent, 1) * 1e6 for before, after in zip(
            cpu_before, (tree_cpu(server.pid), tree_cpu(postmaster) if postmaster else 0.0, time.process_time()),
            strict=True)]
        ctx.console.print(f"HTTP ingest: {sent:,} events in {elapsed:.1f} s = {rate:,.0f} events/s")
    finally:
        server.terminate()
        server.wait(30)

    try:
        with ctx.status(f"Raw COPY of {p['copy_rows']:,} rows into events…"):
            with psycopg.connect(plain_url(url)) as conn:
                ids = [r[0] for r in conn.execute(
                    "SELECT contact_id FROM identities WHERE kind = 'user_id' AND value LIKE %s LIMIT 1000",
                    (f"bench-{tag}-%",)).fetchall()]
            copy = await asyncio.to_thread(_copy_rate, url, ids, p["copy_rows"], tag)
        ctx.console.print(f"raw COPY: {copy:,.0f} rows/s")
    finally:
        with ctx.status("Cleaning up…"):
            await asyncio.to_thread(_cleanup, url, tag)
    return BenchResult(bench=NAME, value=rate, unit="events/s", limit_name="copy", limit=copy, params=p,
                       rows=[("events sent", f"{sent:,}"), ("seconds", f"{elapsed:.1f}"),
                             ("CPU µs/event: API server", f"{cpu[0]:.1f}"),
                             ("CPU µs/event: Postgres", f"{cpu[1]:.1f}" if postmaster else "remote"),
                             ("CPU µs/event: HTTP client", f"{cpu[2]:.1f}"),
                             (f"events/s if {os.cpu_count()} cores were ours alone",
                              f"{(os.cpu_count() or 1) * 1e6 / sum(cpu):,.0f}" if sum(cpu) else "n/a"),
                             ("events per ingest statement (grouped batches)", f"{sent / statements:,.0f}"),
                             ("batch size", str(p["batch"])),
                             ("users per batch", str(p["batch_users"]) if p["batch_users"] else "random"),
                             ("HTTP clients", str(p["clients"])), ("uvicorn workers", str(p["workers"]))])
