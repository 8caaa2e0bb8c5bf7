"""`nudge bench pricing`: a 20-line cart against 100 active promotions and 3 offered coupons.

Two figures: the pricing engine in process (p50/p99 per quote, `quotes` quotes: what domain/promotions/pricing.py
costs, on the rule set's index as the API's cache holds it), then quotes per second through HTTP (`POST
/v1/pricing/quote` on uvicorn with `workers` processes, as production runs several API processes; `clients`
concurrent keep-alive connections, for `seconds`): rule set from each process's cache, the contact, coupons,
usage and stock read in one statement. The limit it is compared with, measured in the same run on the same
server through the same client: `GET /v1/promotions/{id}` — the API key check plus one indexed read, the fixed
cost of any request this API serves. With each, the CPU time per request of the API's processes and of the
embedded Postgres (what a request costs whatever else shares the machine), and for the quotes that of this
process, the clients (on the same cores). The promotions, templates and coupons it
creates are scoped to SKUs of its own and archived at the end (so they never price anyone else's cart).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import text

from bench.core import BenchContext, BenchResult, tree_cpu
from bench.ingest import _wait_up
from domain.keys import Scope
from domain.promotions.index import RuleIndex
from domain.promotions.model import Cart, Line, OfferedCoupon, promotion_from_json
from domain.promotions.pricing import quote
from nudge.embedded import free_port
from store import keys
from store.db import make_engine, make_sessionmaker, transaction
from store.promotions import coupons, promotions

DATABASE_ONLY = True
NAME = "pricing"
DESCRIPTION = "Quote a 20-line cart against 100 promotions and 3 coupons: p99 in process, quotes/s through HTTP"
PARAMS: dict[str, Any] = {"promotions": 100, "lines": 20, "coupons": 3, "quotes": 2_000, "clients": 8,
                          "seconds": 10, "workers": 2, "checkout": ""}
CATEGORIES = 10  # the cart holds the first half of them; promotions on the other half are pruned at once


def definitions(tag: str, n: int, templates: list[int]) -> list[dict[str, Any]]:
    """`n` promotions of every kind over the bench's own categories and SKUs, some in exclusive groups, the last
    `len(templates)` behind coupons."""
    out = []
    for i in range(n):
        category = f"{tag}-c{i % CATEGORIES}"
        base: dict[str, Any] = {"name": f"bench {tag} #{i}", "scope": {"categories": [category]}, "priority": i % 7}
        kind = i % 7
        if kind == 0:
            base |= {"kind": "amount_off", "threshold": 5_000, "amount": 500 + i}
        elif kind == 1:
            base |= {"kind": "tiered", "tiers": [{"threshold": 2_000, "amount": 200}, {"threshold": 10_000,
                                                                                        "amount": 1_500}]}
        elif kind == 2:
            base |= {"kind": "percent_off", "percent": 5 + i % 20, "cap": 3_000}
        elif kind == 3:
            base |= {"kind": "fixed_price", "price": 900, "scope": {"skus": [f"{tag}-s{i % 40}"]}}
        elif kind == 4:
            base |= {"kind": "buy_n_get_m", "buy": 2, "get": 1}
        elif kind == 5:
            base |= {"kind": "free_shipping", "threshold": 1_000}
        else:
            base |= {"kind": "gift", "threshold": 3_000, "gift_sku": f"{tag}-gift", "gift_value": 990}
        if i % 5 == 0:
            base |= {"stacking_group": f"{tag}-g{i % 3}", "exclusivity": "group"}
        elif i % 17 == 0:
            base |= {"exclusivity": "exclusive"}
        if i % 4 == 0:
            base["condition"] = 'cart.quantity >= 3 && context.channel != "pos"'
        out.append(base)
    for t, template in enumerate(templates):
        out[-1 - t] = {"name": f"bench {tag} coupon {t}", "kind": "amount_off", "amount": 300 * (t + 1),
                       "threshold": 1_000, "coupon_template_id": template, "stacking_group": f"{tag}-coupons",
                       "exclusivity": "group" if t else "stackable"}
    return out


def cart_lines(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"sku": f"{tag}-s{j}", "category": f"{tag}-c{j % (CATEGORIES // 2)}", "unit_price": 1_000 + 137 * j,
             "quantity": 1 + j % 3} for j in range(n)]


def in_process(tag: str, p: dict[str, Any]) -> tuple[float, float, float, float, int]:
    """(p50 ms, p99 ms, CPU p50 ms, CPU p99 ms, promotions applied) for the domain engine alone. Wall-clock times
    include whatever else the machine runs; the CPU time of this thread does not (both are reported)."""
    templates = list(range(1, p["coupons"] + 1))
    rule_set = RuleIndex(promotion_from_json(i + 1, d) for i, d in enumerate(definitions(tag, p["promotions"],
                                                                                         templates)))
    lines = tuple(Line(x["sku"], x["category"], x["unit_price"], x["quantity"]) for x in cart_lines(tag, p["lines"]))
    offered = [OfferedCoupon(f"CODE{t}", t) for t in templates]
    cart = Cart(lines, shipping=800, channel="app", now=datetime.now(UTC))
    times = []
    cpu = []
    result = quote(cart, rule_set, coupons=offered)
    for _ in range(p["quotes"]):
        started, used = time.perf_counter(), time.thread_time()
        result = quote(cart, rule_set, coupons=offered)
        times.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - used)
    times.sort()
    cpu.sort()
    k = int(len(times) * 0.99) - 1
    return (statistics.median(times) * 1000, times[k] * 1000, statistics.median(cpu) * 1000, cpu[k] * 1000,
            len(result.applied))


async def _client(port: int, payload: bytes, counts: list[int], deadline: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")  # the status line and the headers, in one read
            status, _, headers = head.partition(b"\r\n")
            length = 0
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            if b" 200 " not in status:
                raise RuntimeError(f"quote answered {status.decode().strip()}: {body[:300]!r}")
            counts[0] += 1
    finally:
        writer.close()


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    tag = f"b{uuid.uuid4().hex[:6]}"
    with ctx.status(f"Pricing in process: {p['quotes']:,} quotes…"):
        p50, p99, cpu50, cpu99, applied = in_process(tag, p)
    ctx.console.print(f"in process: p50 {p50:.2f} ms, p99 {p99:.2f} ms (CPU {cpu50:.2f} / {cpu99:.2f} ms), "
                      f"{applied} promotions applied")

    engine = make_engine(ctx.settings.database_url or "", pool_size=2)
    sessions = make_sessionmaker(engine)
    created: list[int] = []
    try:
        async with transaction(sessions) as s:
            token = (await keys.create_key(s, f"bench pricing {tag}", [Scope.READ])).token
            contact = int(await s.scalar(text("INSERT INTO contacts (user_id) VALUES (:u) RETURNING id"),
                                         {"u": f"bench-{tag}"}) or 0)
            templates = [(await promotions.create_template(
                s, name=f"bench {tag} {t}", public_code=None, valid_from=None, valid_until=None, valid_days=30,
                per_contact_limit=None, stock=None)).id for t in range(p["coupons"])]
            for definition in definitions(tag, p["promotions"], templates):
                created.append((await promotions.create_promotion(s, definition)).id)
            codes = [(await coupons.issue_coupon(s, t, contact, f"bench-{tag}")).code for t in templates]
        body = orjson.dumps({"contact_id": contact, "channel": "app", "shipping": 800, "coupons": codes,
                             "lines": cart_lines(tag, p["lines"])})
        auth = f"Host: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        payload = (f"POST /v1/pricing/quote HTTP/1.1\r\n{auth}"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
        trivial = f"GET /v1/promotions/{created[0]} HTTP/1.1\r\n{auth}\r\n".encode()
        before = None
        if p["checkout"]:  # the other copy first, then this one, in the same conditions
            before = await _http(ctx, p, payload, trivial, p["checkout"])
        counts, elapsed, limit, load, cpu = await _http(ctx, p, payload, trivial, "")
    finally:
        async with transaction(sessions) as s:
            await s.execute(text("UPDATE promotions SET status = 'archived' WHERE id = ANY(:ids)"), {"ids": created})
            await promotions.bump_version(s)
        await engine.dispose()
    rate = counts / elapsed
    compared = [] if before is None else [
        (f"before ({p['checkout']}): quotes/s, limit, ratio",
         f"{before[0] / before[1]:,.1f} / {before[2]:,.1f} / {before[0] / before[1] / before[2]:.3f}"),
        ("load average after the quotes, before", before[3]),
        ("CPU per request, API + Postgres, before", before[4])]
    return BenchResult(bench=NAME, value=rate, unit="quotes/s", limit_name="GET /v1/promotions/{id} (key + one read)",
                       limit=limit, params=p | {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                                                "cpu_p50_ms": round(cpu50, 3), "cpu_p99_ms": round(cpu99, 3)},
                       rows=[("in process p50 / p99", f"{p50:.2f} / {p99:.2f} ms"),
                             ("in process CPU p50 / p99", f"{cpu50:.2f} / {cpu99:.2f} ms"),
                             ("promotions applied to the cart", str(applied)),
                             ("quotes through HTTP", f"{counts:,} in {elapsed:.1f} s"),
                             ("load average (1/5/15 min) after the quotes", load),
                             ("CPU per request, API + Postgres (all their processes)", cpu),
                             ("machine", f"{os.cpu_count()} CPUs; server, clients and Postgres share them"),
                             *compared])


async def _http(ctx: BenchContext, p: dict[str, Any], payload: bytes, trivial: bytes,
                checkout: str) -> tuple[int, float, float, str, str]:
    """(quotes, seconds, the limit's requests/s, load average, CPU per request) through a server of `workers`
    processes."""
    port = free_port()
    server = _start_server(ctx, port, p["workers"], checkout)
    postmaster = _postmaster(ctx)
    try:
        await _wait_up(port, server)
        # warm-up: every worker's cache loads the rule set, every connection its prepared statements
        await asyncio.gather(*(_client(port, payload, [0], time.perf_counter() + 1) for _ in range(p["clients"])))
        counts = [0]
        with ctx.status(f"Quotes through HTTP{' (' + checkout + ')' if checkout else ''}, {p['clients']} clients, "
                        f"{p['seconds']} s…"):
            before = tree_cpu(server.pid), tree_cpu(postmaster), time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(_client(port, payload, counts, started + p["seconds"])
                                   for _ in range(p["clients"])))
            elapsed = time.perf_counter() - started
            quoted = (tree_cpu(server.pid) - before[0], tree_cpu(postmaster) - before[1],
                      time.process_time() - before[2])
        load = _load()
        reads = [0]
        with ctx.status(f"The limit: GET /v1/promotions/{{id}}, {p['clients']} clients, {p['seconds']} s…"):
            before = tree_cpu(server.pid), tree_cpu(postmaster)
            began = time.perf_counter()
            await asyncio.gather(*(_client(port, trivial, reads, began + p["seconds"]) for _ in range(p["clients"])))
            limit = reads[0] / (time.perf_counter() - began)
            read = tree_cpu(server.pid) - before[0], tree_cpu(postmaster) - before[1]
    finally:
        server.terminate()
        server.wait(30)
    cpu = (f"quote {quoted[0] * 1000 / max(1, counts[0]):.2f} + {quoted[1] * 1000 / max(1, counts[0]):.2f} ms "
           f"(client {quoted[2] * 1000 / max(1, counts[0]):.2f} ms), "
           f"read {read[0] * 1000 / max(1, reads[0]):.2f} + {read[1] * 1000 / max(1, reads[0]):.2f} ms")
    return counts[0], elapsed, limit, load, cpu


def _postmaster(ctx: BenchContext) -> int:
    """The embedded Postgres' postmaster (0 when the database is configured elsewhere: its CPU is not counted)."""
    try:
        with open(ctx.settings.home / "pg" / "postmaster.pid") as f:
            return int(f.readline())
    except (OSError, ValueError):
        return 0


def _start_server(ctx: BenchContext, port: int, workers: int, checkout: str = "") -> subprocess.Popen[bytes]:
    """uvicorn with `workers` processes, as bench/ingest.py starts it, without the per-key rate limit (100/s by
    default): the bench sends everything with one key, and would otherwise measure the limit. `checkout`: serve
    the API from another copy of the project (e.g. `git archive HEAD`), to compare before and after in the same
    conditions."""
    s = ctx.settings
    env = os.environ | {"DATABASE_URL": s.database_url or "", "SMTP_URL": s.smtp_url or "smtp://127.0.0.1:1",
                        "TEMPORAL_ADDRESS": s.temporal_address or "127.0.0.1:1", "NUDGE_LOG_LEVEL": "warning",
                        "NUDGE_RATE_LIMIT_API_PER_SECOND": "0"}
    cmd = [sys.executable, "-m", "uvicorn", "nudge.app:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    if checkout:
        env["PYTHONPATH"] = checkout
    return subprocess.Popen(cmd, env=env, cwd=checkout or None)


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"
