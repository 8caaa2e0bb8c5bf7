"""`nudge bench inventory`: `clients` concurrent clients race for `units` units of one promotion's stock, each
reservation its own transaction, until the stock says no. Exactly `units` must succeed — more would be overselling,
fewer a leak — and the figure is reservations/s. The race is run once per entry of `slots`: the stock on one row
(every reservation waits for the row lock its predecessor holds until it commits) and split over slot rows
(store/inventory/stock.py: concurrent reservations take different rows), so before and after are measured in the
same conditions. After each race everything is released and every slot checked to be back at zero reserved."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bench.core import BenchContext, BenchResult
from store.db import make_engine, make_sessionmaker, transaction
from store.promotions import inventory

DATABASE_ONLY = True
NAME = "inventory"
DESCRIPTION = "64 concurrent clients race for 1,000 units of stock: exactly 1,000 succeed; reservations/s"
PARAMS: dict[str, Any] = {"clients": 64, "units": 1_000, "slots": (1, 16)}


async def race(ctx: BenchContext, sessions: async_sessionmaker[AsyncSession], p: dict[str, Any],
               slots: int) -> tuple[float, int, float]:
    """(reservations/s, clients refused, seconds to sell out) with the stock over `slots` rows."""
    subject = f"bench:{uuid.uuid4().hex[:8]}"
    expires = datetime.now(UTC) + timedelta(minutes=10)
    wins = [0]
    refusals = [0]
    async with transaction(sessions) as s:
        await inventory.set_total(s, subject, p["units"], slots=slots)

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

    with ctx.status(f"{p['clients']} clients racing for {p['units']:,} units over {slots} slot row(s)…"):
        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(p["clients"])))
        elapsed = time.perf_counter() - started
    async with transaction(sessions) as s:
        after = (await inventory.levels(s, [subject]))[subject]
    if wins[0] != p["units"] or after.reserved != p["units"]:
        raise RuntimeError(f"{wins[0]} reservations succeeded for {p['units']} units (stock: {after})")
    async with transaction(sessions) as s:
        released = await inventory.release_expired(s, expires + timedelta(seconds=1), limit=p["units"] + 10)
        left = (await inventory.levels(s, [subject]))[subject]
    if left.reserved != 0 or released != p["units"]:
        raise RuntimeError(f"release returned {released} units; stock now {left}")
    return wins[0] / elapsed, refusals[0], elapsed


def _load() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


async def run(ctx: BenchContext, **params: Any) -> BenchResult:
    p = PARAMS | params
    engine = make_engine(ctx.settings.database_url or "", pool_size=p["clients"], max_overflow=0)
    sessions = make_sessionmaker(engine)
    rows: list[tuple[str, str]] = []
    rates: list[float] = []
    try:
        for slots in p["slots"]:
            rate, refused, elapsed = await race(ctx, sessions, p, slots)
            rates.append(rate)
            rows.append((f"{slots} slot row(s): reservations/s", f"{rate:,.1f} ({p['units']:,} of {p['units']:,} "
                                                                 f"units in {elapsed:.2f} s, {refused} refused, "
                                                                 f"all released; load {_load()})"))
    finally:
        await engine.dispose()
    if len(rates) > 1:
        rows.append((f"{p['slots'][-1]} slots vs {p['slots'][0]}", f"×{rates[-1] / rates[0]:.2f}"))
    return BenchResult(bench=NAME, value=rates[-1], unit="reservations/s",
                       params=p | {"rates": [round(r, 1) for r in rates]}, rows=rows)
