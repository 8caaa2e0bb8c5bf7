"""The rule-set cache: quotes between polls read nothing for the rule set, and a change made elsewhere (another API
process) is seen at the next poll, by its version, without this process being told."""

from __future__ import annotations

import asyncio
import time
import uuid

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
