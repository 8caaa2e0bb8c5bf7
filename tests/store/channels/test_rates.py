"""Provider protection: rate limits shared across processes (concurrent takers, on separate connections as separate
workers would be, never get more than the bucket holds; a throttled message waits in the queue, it is not failed),
and the circuit breaker, which routes to the fallback channel while the provider keeps failing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.breaker import CircuitBreaker
from store.channels import rates, records
from store.db import transaction
from tests.store.channels.conftest import MakeService, attempts, make_person, step


async def test_concurrent_takers_share_one_bucket(sessions: async_sessionmaker[AsyncSession]) -> None:
    provider = f"test-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)

    async def take() -> int:
        async with transaction(sessions) as s:
            return await rates.take(s, provider, 2, rate=1.0, burst=5, now=now)

    granted = await asyncio.gather(*(take() for _ in range(8)))
    assert sum(granted) == 5
    async with transaction(sessions) as s:  # two seconds later, two more tokens
        assert await rates.take(s, provider, 10, rate=1.0, burst=5, now=now + timedelta(seconds=2)) == 2


async def test_a_throttled_message_stays_queued_for_a_retry(sessions: async_sessionmaker[AsyncSession],
                                                            make_service: MakeService) -> None:
    person = await make_person(sessions)
    service = make_service(rates={"inbox": 0.001})  # a bucket of one
    steps = [step(person, ["inbox"]) for _ in range(3)]
    await service.send(steps)
    states = sorted([(await attempts(sessions, person, s.key))[0][1] for s in steps])
    assert states == ["delivered", "queued", "queued"]


async def test_an_open_breaker_routes_to_the_fallback_channel(sessions: async_sessionmaker[AsyncSession],
                                                             make_service: MakeService) -> None:
    service = make_service()
    service.breakers["sms"] = CircuitBreaker("sms", threshold=2, window=3600, cooldown=3600)
    busy = [await make_person(sessions) for _ in range(2)]
    async with transaction(sessions) as s:  # the Twilio simulator throttles this number (429)
        await s.execute(text("UPDATE contacts SET phone = '+15005550003' WHERE id = ANY(:ids)"),
                        {"ids": [p.id for p in busy]})
    throttled = [step(p, ["sms"]) for p in busy]
    await service.send(throttled)  # two provider errors: the breaker opens; these wait for a retry
    assert [(await attempts(sessions, p, s.key)) for p, s in zip(busy, throttled, strict=True)] == \
        [[("sms", "queued")]] * 2
    person = await make_person(sessions)
    s = step(person, ["sms", "inbox"])
    await service.send([s])
    assert await attempts(sessions, person, s.key) == [("sms", "failed"), ("inbox", "delivered")]
    async with sessions() as session:
        (first, _) = sorted(await records.attempts_of(session, person.id, key=s.key), key=lambda a: a.attempt)
    assert first.error_class == "breaker_open"
