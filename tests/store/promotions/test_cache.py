"""The rule-set cache: quotes between polls read nothing for the rule set; a change made elsewhere (another API
process) is heard through LISTEN/NOTIFY without waiting for a poll, and seen at the next poll, by its version,
while the listener is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.promotions import promotions
from store.promotions.cache import RuleSetCache


async def test_a_change_elsewhere_is_seen_at_the_next_poll_and_nothing_is_read_between_polls(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    cache = RuleSetCache(poll_seconds=0.5)
    first = await cache.current(sessions)
    for _ in range(50):
        assert await cache.current(sessions) is first  # served from memory
    assert cache.loads == 1
    name = f"cache-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:  # "another process": this cache is not told
        created = await promotions.create_promotion(s, {"name": name, "kind": "amount_off", "amount": 1,
                                                        "scope": {"skus": [name]}})
    changed = time.monotonic()
    while created.id not in {p.id for p in (await cache.current(sessions)).promotions}:
        # The design bound is one poll (0.5 s); generous here so a loaded test machine does not flake.
        assert time.monotonic() - changed < 10, "the change was never seen"
        await asyncio.sleep(0.02)
    assert cache.loads == 2
    async with transaction(sessions) as s:
        await promotions.update_promotion(s, created.id, definition=None, status="paused", stock=None)
    cache.invalidate()  # a change through this process: seen on the next use
    assert created.id not in {p.id for p in (await cache.current(sessions)).promotions}


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < 10, what  # generous: a loaded test machine must not flake
        await asyncio.sleep(0.02)


async def _listening(*caches: RuleSetCache) -> bool:
    return all(c.listeners for c in caches)


async def test_a_change_through_one_process_is_heard_by_another_without_waiting_for_a_poll(
        sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
    """Two caches as two API processes would hold them, each listening on its own connection; neither would poll
    for an hour, so only the NOTIFY can tell the second one."""
    here, there = (RuleSetCache(poll_seconds=3600, listening_poll_seconds=3600) for _ in range(2))
    tasks = [asyncio.create_task(c.listen(database_url)) for c in (here, there)]
    try:
        await _until(lambda: _listening(here, there), "the caches never listened")
        assert here.listeners.isdisjoint(there.listeners)  # one dedicated connection each
        await here.current(sessions)
        before = await there.current(sessions)
        loads = there.loads
        name = f"heard-{uuid.uuid4().hex[:8]}"
        async with transaction(sessions) as s:  # through `here`'s process: it invalidates its own cache
            created = await promotions.create_promotion(s, {"name": name, "kind": "amount_off", "amount": 1,
                                                            "scope": {"skus": [name]}})
        here.invalidate()
        assert created.id in {p.id for p in (await here.current(sessions)).promotions}

        async def seen_there() -> bool:
            return created.id in {p.id for p in (await there.current(sessions)).promotions}

        await _until(seen_there, "the other process never heard of the change")
        assert there.loads == loads + 1 and there.heard >= 1
        assert (await there.current(sessions)).version > before.version
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_while_the_listener_is_down_the_cache_polls(
        sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
    cache = RuleSetCache(poll_seconds=0.2, listening_poll_seconds=3600)
    task = asyncio.create_task(cache.listen(database_url, retry_seconds=3600))  # never comes back in this test
    try:
        await _until(lambda: _listening(cache), "the cache never listened")
        await cache.current(sessions)
        async with transaction(sessions) as s:  # its connection drops
            await s.execute(text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:p AS int[])) AS pid"),
                            {"p": list(cache.listeners)})

        async def down() -> bool:
            return not cache.listeners

        await _until(down, "the dropped connection was not noticed")
        name = f"polled-{uuid.uuid4().hex[:8]}"
        async with transaction(sessions) as s:  # nobody hears this NOTIFY: the poll must find it
            created = await promotions.create_promotion(s, {"name": name, "kind": "amount_off", "amount": 1,
                                                            "scope": {"skus": [name]}})

        async def polled() -> bool:
            return created.id in {p.id for p in (await cache.current(sessions)).promotions}

        await _until(polled, "the change was never polled")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
