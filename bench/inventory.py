"""`nudge bench inventory`: `clients` concurrent clients race for `units` units of one promotion's stock, each
reservation its own transaction (`UPDATE … WHERE total - reserved - used >= n`), until the stock says no.
Exactly `units` must succeed — more would be overselling, fewer a leak — and the figure is reservations/s.
Everything is released and the stock row checked to be back at zero reserved."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.core import BenchContext, BenchResult
from store.db import make_engine, make_sessionmaker, transaction
from store.promotions import inventory

DATABASE_ONLY = True
NAME = "inventory"
DESCRIPTION = "64 concurrent clients race for 1,000 units of stock: exactly 1,000 succeed; reservations/s"
PARAMS: dict[str, Any] = {"clients": 64, "units": 1_000}


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    tag = uuid.uuid4().hex[:8]
    subject = f"bench:{tag}"
    engine = make_engine(ctx.settings.database_url or "", pool_size=p["clients"], max_overflow=0)
    sessions = make_sessionmaker(engine)
    expires = datetime.now(UTC) + timedelta(minutes=10)
    wins = [0]
    refusals = [0]
    try:
        async with transaction(sessions) as s:
            await inventory.set_total(s, subject, p["units"])

        async def client(n: int) -> None:
            attempt = 0
            while True:
                attempt += 1
                try:
                    async with transaction(sessions) as s:
                        await inventory.reserve(s, f"{subject}:{n}:{attempt}", subject, 1, expires_at=expires)
                    wins[0] += 1
                except inventory.OutOfStock:
                    refusals[0] += 1
                    return

        with ctx.status(f"{p['clients']} clients racing for {p['units']:,} units…"):
            started = time.perf_counter()
            await asyncio.gather(*(client(n) for n in range(p["clients"])))
            elapsed = time.perf_counter() - started
        async with transaction(sessions) as s:
            after = (await inventory.levels(s, [subject]))[subject]
        if wins[0] != p["units"] or after.reserved != p["units"]:
            raise RuntimeError(f"{wins[0]} reservations succeeded for {p['units']} units (stock row: {after})")
        async with transaction(sessions) as s:
            released = await inventory.release_expired(s, expires + timedelta(seconds=1), limit=p["units"] + 10)
            left = (await inventory.levels(s, [subject]))[subject]
        if left.reserved != 0 or released != p["units"]:
            raise RuntimeError(f"release returned {released} units; stock row now {left}")
    finally:
        await engine.dispose()
    rate = wins[0] / elapsed
    return BenchResult(bench=NAME, value=rate, unit="reservations/s", params=p,
                       rows=[("reservations that succeeded", f"{wins[0]:,} of {p['units']:,} units"),
                             ("clients refused (out of stock)", f"{refusals[0]:,} of {p['clients']}"),
                             ("time to sell out", f"{elapsed:.2f} s"),
                             ("released afterwards", f"{released:,} (reserved now {left.reserved})")])
