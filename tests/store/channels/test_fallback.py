"""Sending a step through a fallback chain with the real WeChat and Twilio simulators, their signed callbacks
arriving at the real API: a failure receipt or silence past the window sends exactly one SMS; success none."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.simulators import Simulators
from store.channels import records
from store.db import transaction
from tests.store.channels.conftest import PAST_WINDOW, MakeService, attempts, make_person, settled, step


def texts_to(simulators: Simulators, phone: str) -> list[dict[str, object]]:
    return [m for m in simulators.twilio.inbox.read() if m.get("to") == phone]


def wechats_to(simulators: Simulators, openid: str) -> list[dict[str, object]]:
    return [m for m in simulators.wechat.inbox.read() if m.get("to") == openid]


async def test_wechat_failure_receipt_sends_exactly_one_sms(sessions: async_sessionmaker[AsyncSession],
                                                           make_service: MakeService,
                                                           simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="undelivered-")
    s = step(person, ["wechat", "sms"])
    await service.send([s])
    assert await settled(sessions, person, s.key, 1, {"failed"}) == "failed"  # the WeChat callback said so
    await service.sweep(only=[s])
    await service.sweep(only=[s])
    await service.sweep(only=[s], now=datetime.now(UTC) + PAST_WINDOW)  # the failed attempt's window is irrelevant now
    assert len(wechats_to(simulators, person.openid)) == 1
    assert len(texts_to(simulators, person.phone)) == 1
    assert [c for c, _ in await attempts(sessions, person, s.key)] == ["wechat", "sms"]


async def test_wechat_silence_past_the_window_sends_one_sms(sessions: async_sessionmaker[AsyncSession],
                                                           make_service: MakeService,
                                                           simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="silent-")
    s = step(person, ["wechat", "sms"])
    start = datetime.now(UTC)
    await service.send([s], now=start)
    await service.sweep(only=[s], now=start)  # inside the window: nothing to do
    assert texts_to(simulators, person.phone) == []
    later = start + PAST_WINDOW
    await service.sweep(only=[s], now=later)
    await service.sweep(only=[s], now=later)
    assert len(texts_to(simulators, person.phone)) == 1
    first, second = await attempts(sessions, person, s.key)
    assert first == ("wechat", "sent") and second[0] == "sms"


async def test_a_success_receipt_sends_nothing_more(sessions: async_sessionmaker[AsyncSession],
                                                    make_service: MakeService, simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["wechat", "sms"])
    await service.send([s])
    await settled(sessions, person, s.key, 1, {"delivered"})
    await service.sweep(only=[s], now=datetime.now(UTC) + PAST_WINDOW)
    assert texts_to(simulators, person.phone) == []
    assert await attempts(sessions, person, s.key) == [("wechat", "delivered")]


async def test_a_permanent_send_error_falls_back_at_once(sessions: async_sessionmaker[AsyncSession],
                                                        make_service: MakeService, simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="unreachable-")
    s = step(person, ["wechat", "sms"])
    await service.send([s])  # WeChat refuses (43004): the SMS goes in the same call
    assert len(texts_to(simulators, person.phone)) == 1
    assert (await attempts(sessions, person, s.key))[0] == ("wechat", "failed")


async def test_a_retried_send_sends_nothing_twice(sessions: async_sessionmaker[AsyncSession],
                                                  make_service: MakeService, simulators: Simulators) -> None:
    service = make_service()
    person = await make_person(sessions, openid_prefix="silent-")
    s = step(person, ["wechat", "sms"])
    await service.send([s])
    await service.send([s])  # what a retried activity does
    assert len(wechats_to(simulators, person.openid)) == 1
    assert texts_to(simulators, person.phone) == []


async def test_a_worker_dying_mid_send_resends_the_same_attempt_once(
        sessions: async_sessionmaker[AsyncSession], make_service: MakeService, simulators: Simulators) -> None:
    """The send was recorded as queued but the worker died before the provider call: after the lease the sweeper
    sends that attempt (not the next channel), once."""
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["wechat", "sms"])
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        await records.register(session, [s], now)
        claimed = await records.claim(session, service.policy, now, only=[(s.contact_id, s.key)])
    assert len(claimed.jobs) == 1  # ... and the process dies here, before sending
    await service.sweep(only=[s], now=now)  # leased: nothing yet
    assert wechats_to(simulators, person.openid) == []
    await service.sweep(only=[s], now=now + service.policy.lease)
    await service.sweep(only=[s], now=now + service.policy.lease)
    assert len(wechats_to(simulators, person.openid)) == 1
    assert texts_to(simulators, person.phone) == []
