"""Confined worker processes: a runaway call is stopped by its bound and fails alone; the event loop never waits."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Iterator

import pytest

from core.confinement import Confinement, Exceeded, Limits

LIMITS = Limits(cpu_seconds=0.5, memory_bytes=128 * 2**20, wall_seconds=1.5)


@pytest.fixture(scope="module")
def confinement() -> Iterator[Confinement]:
    pool = Confinement(LIMITS, processes=1)  # one worker: a killed worker's replacement is observable
    yield pool
    pool.close()


def _bound(outcome: object) -> str | None:
    return outcome.bound if isinstance(outcome, Exceeded) else None


async def test_values_and_exceptions_come_back_call_by_call(confinement: Confinement) -> None:
    one, bad = await confinement.map(int, [("1",), ("x",)])
    assert one == 1
    assert isinstance(bad, ValueError) and "'x'" in str(bad)
    with pytest.raises(ValueError):
        await confinement.run(int, "x")


async def test_python_code_past_the_cpu_bound_is_interrupted_and_the_worker_goes_on() -> None:
    # A wall clock far beyond the CPU bound: on a loaded machine 0.5 s of CPU can take seconds of wall time.
    pool = Confinement(Limits(cpu_seconds=0.5, memory_bytes=128 * 2**20, wall_seconds=60), processes=1)
    try:
        runaway, after = await pool.map(statistics.mean, [(range(10**9),), ([1, 2, 3],)])
    finally:
        pool.close()
    assert _bound(runaway) == "cpu" and "0.5 s of CPU" in str(runaway)
    assert after == 2


async def test_an_allocation_past_the_memory_bound_fails_alone(confinement: Confinement) -> None:
    outcomes = await confinement.map(bytearray, [(3,), (10**9,), (4,)])
    assert outcomes[0] == bytearray(3) and outcomes[2] == bytearray(4)
    assert _bound(outcomes[1]) == "memory" and "128 MB" in str(outcomes[1])


async def test_a_call_stuck_past_the_wall_clock_is_killed_and_the_rest_run_in_a_new_worker(
    confinement: Confinement,
) -> None:
    outcomes = await confinement.map(time.sleep, [(0,), (60,), (0,)])
    assert outcomes[0] is None and outcomes[2] is None
    assert _bound(outcomes[1]) == "wall"
    assert await confinement.run(int, "7") == 7


async def test_a_crashed_worker_fails_only_its_own_call(confinement: Confinement) -> None:
    outcomes = await confinement.map(os._exit, [(3,)])
    assert _bound(outcomes[0]) == "crash"
    assert await confinement.map(abs, [(-1,), (-2,)]) == [1, 2]


async def test_the_event_loop_keeps_running_while_a_c_call_holds_its_worker(confinement: Confinement) -> None:
    """`sum(range(...))` never returns to Python, so neither the CPU timer nor a thread's GIL switch would stop it
    in-process; confined, the loop ticks on until the wall clock kills it."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        (outcome,) = await confinement.map(sum, [(range(10**13),)])
    finally:
        ticker.cancel()
    assert _bound(outcome) == "wall"
    assert ticks > 10  # ~150 when the machine is idle; only an ordering check


async def test_closing_stops_the_workers() -> None:
    pool = Confinement(LIMITS, processes=2)
    assert await pool.map(abs, [(-1,), (-2,)]) == [1, 2]
    workers = list(pool._workers)
    assert len(workers) == 2
    pool.close()
    assert all(w.process.poll() is not None for w in workers)


async def test_a_worker_holds_none_of_the_parents_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@db/nudge")
    pool = Confinement(LIMITS, processes=1)
    try:
        assert await pool.run(os.getenv, "DATABASE_URL") is None
    finally:
        pool.close()
