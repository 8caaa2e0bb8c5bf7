"""`nudge bench ledger`: idempotent credits through the batching writer vs pgbench TPC-B on the same Postgres.

Two phases over the same 100k accounts, `clients` closed-loop clients each: one posting per call (every
client waits for its durable answer before the next, so at most `clients` postings can share a commit), then
`per_call` postings per call (a batch of grants, each with its own reference and outcome). The JSON line's
`value` is the first phase; `params.rates` has every phase. Also times a spend over an account with
`history_months` of monthly buckets against one over a new account: the bucket design (月余) should make both
cost the same.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import text

from bench.core import BenchContext, BenchResult
from domain.ledger.postings import Kind, Request, month_of
from nudge.embedded import _pg_bin
from store.db import make_engine, make_sessionmaker, plain_url, transaction
from store.ledger.programs import create_program
from store.ledger.receipts import Submission
from store.ledger.writer import PostingWriter, utcnow

DATABASE_ONLY = True
NAME = "ledger"
DESCRIPTION = "Points postings/s (16 clients, 100k accounts) vs pgbench TPC-B-like TPS on the same Postgres"
PARAMS: dict[str, Any] = {"accounts": 100_000, "clients": 16, "per_call": (1, 32), "seconds": 15, "writers": 2,
                          "max_batch": 512,
                          "pgbench_seconds": 15, "pgbench_scale": 16, "history_months": 36, "spends": 200}


def pgbench_tps(url: str, *, clients: int, seconds: int, scale: int) -> float:
    """Init a scratch database, run the built-in TPC-B-like script, drop the database."""
    base = plain_url(url)
    name = f"nudge_pgbench_{uuid.uuid4().hex[:8]}"
    admin = base.rsplit("/", 1)[0] + "/postgres"
    scratch = base.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        binary = str(_pg_bin("pgbench"))
        subprocess.run([binary, "-i", "-q", "-s", str(scale), scratch], check=True, capture_output=True, text=True)
        out = subprocess.run([binary, "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), scratch],
                             check=True, capture_output=True, text=True).stdout
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    match = re.search(r"tps = ([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"could not read pgbench's TPS from:\n{out}")
    return float(match.group(1))


def vacuum(url: str, tables: tuple[str, ...]) -> None:
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    url = ctx.settings.database_url or ""
    engine = make_engine(url, pool_size=p["writers"] + 4)
    sessions = make_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    program_id = 0
    try:
        with ctx.status(f"pgbench TPC-B-like, {p['clients']} clients, {p['pgbench_seconds']} s…"):
            tps = await asyncio.to_thread(pgbench_tps, url, clients=p["clients"], seconds=p["pgbench_seconds"],
                                          scale=p["pgbench_scale"])
        ctx.console.print(f"pgbench: {tps:,.0f} TPS")

        with ctx.status(f"Creating {p['accounts']:,} contacts and accounts…"):
            async with transaction(sessions) as s:
                program_id = (await create_program(s, name=f"bench-{tag}", unit="points", expiry_months=None,
                                                   retention_months=12)).id
                rows = await s.execute(text("""
                    INSERT INTO contacts (user_id) SELECT 'bench-ledger-' || :tag || '-' || n
                    FROM generate_series(1, :n) n RETURNING id
                """), {"tag": tag, "n": p["accounts"]})
                contacts = sorted(r.id for r in rows)
                await s.execute(text("INSERT INTO ledger_accounts (contact_id, program_id) "
                                     "SELECT unnest(CAST(:ids AS bigint[])), :p"), {"ids": contacts, "p": program_id})
        with ctx.status("Vacuuming the new accounts (as pgbench -i does)…"):
            # A steady-state ledger's accounts are vacuumed; freshly bulk-loaded rows would otherwise have
            # their hint bits set (and pages rewritten) by the first postings, inside the timed window.
            await asyncio.to_thread(vacuum, url, ("contacts", "ledger_accounts"))

        async with PostingWriter(sessions, writers=p["writers"], max_batch=p["max_batch"]) as writer:
            phases = [await phase(ctx, writer, program_id, contacts, tag, per_call=n, clients=p["clients"],
                                  seconds=p["seconds"]) for n in p["per_call"]]
            old_cost, new_cost, touched = await spend_costs(writer, sessions, program_id, contacts, p)
        rows = []
        for ph in phases:
            label = "1 posting per call" if ph.per_call == 1 else f"{ph.per_call} postings per call"
            rows += [
                (f"[bold]{label}[/]", f"[bold]{ph.rate:,.0f} postings/s[/] ({ph.rate / tps:.2f}× pgbench)"),
                ("  postings / per transaction", f"{ph.done:,} / {ph.per_txn:.1f}"),
                ("  CPU per posting: this process / Postgres writers",
                 f"{ph.cpu_us:.0f} / {ph.pg_us:.0f} µs" if ph.pg_us >= 0 else f"{ph.cpu_us:.0f} µs / n/a (remote)"),
                ("  batch call incl. commit, mean", f"{ph.call_ms:.2f} ms"),
                ("  call latency p50 / p99", f"{ph.p50_ms:.1f} / {ph.p99_ms:.1f} ms"),
                ("  load average at the end (2 cores here)", f"{ph.load:.1f}"),
            ]
        rows += [(f"spend, {p['history_months']}-month account", f"{old_cost * 1000:.2f} ms ({touched} buckets)"),
                 ("spend, new account", f"{new_cost * 1000:.2f} ms")]
        # The figure: single postings, each client waiting for its answer before the next.
        first = phases[0]
        return BenchResult(bench=NAME, value=first.rate, unit="postings/s", limit_name="pgbench TPC-B-like TPS",
                           limit=tps, params=p | {"rates": {str(ph.per_call): round(ph.rate) for ph in phases}},
                           rows=rows)
    finally:
        if program_id:
            with ctx.status("Cleaning up…"):
                await cleanup(sessions, program_id, tag)
        await engine.dispose()


@dataclass
class Phase:
    per_call: int
    done: int
    rate: float
    per_txn: float
    cpu_us: float
    pg_us: float
    call_ms: float
    p50_ms: float
    p99_ms: float
    load: float


async def phase(ctx: BenchContext, writer: PostingWriter, program_id: int, contacts: list[int], tag: str, *,
                per_call: int, clients: int, seconds: float) -> Phase:
    """`clients` closed-loop clients for `seconds`, each call carrying `per_call` credits (1: one posting awaited
    before the next; more: a batch such as a task engine's grants for a period, each with its own outcome)."""
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    batches, busy = writer.batches, writer.busy

    async def client(n: int) -> None:
        nonlocal done
        rng = random.Random(n * 1000 + per_call)
        i = 0
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            if per_call == 1:
                contact = rng.choice(contacts)
                await writer.post(program_id, Request(f"reward:bench-{tag}:{contact}:{n}:{i}", Kind.CREDIT,
                                                      contact, rng.randint(1, 100)))
            else:
                subs = [Submission(program_id, Request(f"reward:bench-{tag}:{c}:{n}:{i}:{k}", Kind.CREDIT,
                                                             c, rng.randint(1, 100)))
                        for k, c in enumerate(rng.choices(contacts, k=per_call))]
                if failed := [o for o in await writer.post_many(subs) if isinstance(o, Exception)]:
                    raise failed[0]
            latencies.append(time.perf_counter() - started)
            i += 1
            done += per_call

    with ctx.progress() as bar:
        task = bar.add_task(f"credits, {per_call} per call (s elapsed)", total=int(seconds))
        await asyncio.sleep(0.2)  # the writers' connections are open
        backend_cpu = postgres_cpu(writer.backends)
        cpu = time.process_time()
        started = time.perf_counter()
        runners = [asyncio.create_task(client(n)) for n in range(clients)]
        while not all(r.done() for r in runners):
            await asyncio.sleep(0.5)
            bar.update(task, completed=min(int(seconds), int(time.perf_counter() - started)))
        await asyncio.gather(*runners)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        backend_end = postgres_cpu(writer.backends)
    backend_cpu = backend_end - backend_cpu if min(backend_cpu, backend_end) >= 0 else -1.0
    batches, busy = writer.batches - batches, writer.busy - busy
    latencies.sort()
    return Phase(per_call=per_call, done=done, rate=done / elapsed, per_txn=done / max(batches, 1),
                 cpu_us=cpu / max(done, 1) * 1e6, pg_us=backend_cpu / max(done, 1) * 1e6 if backend_cpu >= 0 else -1,
                 call_ms=busy / max(batches, 1) * 1000, p50_ms=latencies[len(latencies) // 2] * 1000,
                 p99_ms=latencies[int(len(latencies) * 0.99)] * 1000, load=os.getloadavg()[0])


def postgres_cpu(pids: list[int]) -> float:
    """User + system CPU seconds of these Postgres backends so far; -1 if they are not on this machine."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return -1.0
    return total / os.sysconf("SC_CLK_TCK")


async def spend_costs(writer: PostingWriter, sessions: Any, program_id: int, contacts: list[int],
                      p: dict[str, Any]) -> tuple[float, float, int]:
    """Mean time of one spend (of 1 point) over an account with long history and over a new one."""
    old, new = contacts[0], contacts[1]
    this_month = month_of(utcnow())
    history = [Request(f"hist:{old}:{m}", Kind.CREDIT, old, 10_000, earned_month=this_month - m)
               for m in range(p["history_months"])]
    await writer.post_many([Submission(program_id, r) for r in history])
    await writer.post(program_id, Request(f"hist:{new}", Kind.CREDIT, new, 10_000))
    async with sessions() as s:
        touched = await s.scalar(text("SELECT count(*) FROM ledger_buckets WHERE contact_id = :c AND program_id = :p "
                                      "AND remaining > 0"), {"c": old, "p": program_id})
    costs = []
    for contact in (old, new):
        started = time.perf_counter()
        for i in range(p["spends"]):
            await writer.post(program_id, Request(f"spend:{contact}:{i}", Kind.DEBIT, contact, 1))
        costs.append((time.perf_counter() - started) / p["spends"])
    return costs[0], costs[1], int(touched or 0)


async def cleanup(sessions: Any, program_id: int, tag: str) -> None:
    async with transaction(sessions) as s:
        for table in ("ledger_entries", "ledger_buckets", "ledger_holds", "ledger_rollups", "ledger_accounts",
                      "ledger_postings", "ledger_system_balances"):
            await s.execute(text(f"DELETE FROM {table} WHERE program_id = :p"), {"p": program_id})
        await s.execute(text("DELETE FROM ledger_programs WHERE id = :p"), {"p": program_id})
        await s.execute(text("DELETE FROM contacts WHERE user_id LIKE :pattern"), {"pattern": f"bench-ledger-{tag}-%"})
