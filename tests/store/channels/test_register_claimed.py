"""Plans registered and claimed in one write (`records.register_claimed`, what a journey's move does): the plan is
written leased with its send recorded as a queued attempt, screening and quiet hours apply as in `claim`, a step
already recorded is left alone, and a crash between the commit and the send leaves the send to the sweeper, once."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.channels.quiet import QuietHours
from store.channels import records, suppressions
from store.db import transaction
from tests.store.channels.conftest import MakeService, attempts, make_person, step
from tests.store.channels.test_anti_disturbance import inbox_keys


async def plan_of(sessions: async_sessionmaker[AsyncSession], contact_id: int, key: str) -> tuple[str, datetime | None]:
    async with sessions() as s:
        row = (await s.execute(text("SELECT status, wake_at FROM delivery_plans WHERE contact_id = :c AND key = :k"),
                               {"c": contact_id, "k": key})).one()
    return row.status, row.wake_at


async def test_a_new_step_is_written_leased_with_its_send_queued_and_sent_once(
        sessions: async_sessionmaker[AsyncSession], make_service: MakeService) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["inbox"])
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        claimed = await records.register_claimed(session, service.policy, [s], now)
    assert [(j.key, j.channel, j.number) for j in claimed.jobs] == [(s.key, "inbox", 1)]
    assert await plan_of(sessions, person.id, s.key) == ("sending", now + service.policy.lease)
    assert await attempts(sessions, person, s.key) == [("inbox", "queued")]

    progress = await service.send_claimed(claimed, [s], now=now)
    assert progress.sent == 1
    assert await attempts(sessions, person, s.key) == [("inbox", "delivered")]
    assert (await plan_of(sessions, person.id, s.key))[0] == "done"
    assert await inbox_keys(sessions, person.id) == [s.key]

    async with transaction(sessions) as session:  # the same step again (a replayed move): left alone
        again = await records.register_claimed(session, service.policy, [s], now)
    assert again.jobs == [] and await inbox_keys(sessions, person.id) == [s.key]


async def test_screening_and_quiet_hours_apply_as_in_claim(sessions: async_sessionmaker[AsyncSession],
                                                           make_service: MakeService) -> None:
    service = make_service(quiet=QuietHours(time(21), time(8)))
    listed, late = await make_person(sessions), await make_person(sessions, timezone="Asia/Shanghai")
    async with transaction(sessions) as session:
        await suppressions.add_address(session, "email", listed.email, "manual")
    at = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), time(14), tzinfo=UTC)  # 22:00 in Shanghai
    fell_back, deferred = step(listed, ["email", "inbox"]), step(late, ["inbox"])
    async with transaction(sessions) as session:
        claimed = await records.register_claimed(session, service.policy, [fell_back, deferred], at)
    assert [(j.contact_id, j.channel, j.number) for j in claimed.jobs] == [(listed.id, "inbox", 2)]
    assert claimed.suppressed == 1 and claimed.deferred == 1
    assert await attempts(sessions, listed, fell_back.key) == [("email", "suppressed"), ("inbox", "queued")]
    assert await plan_of(sessions, late.id, deferred.key) == ("deferred", at + timedelta(hours=10))  # 08:00 there
    assert await attempts(sessions, late, deferred.key) == []


async def test_a_crash_before_the_send_leaves_it_to_the_sweeper_once(sessions: async_sessionmaker[AsyncSession],
                                                                    make_service: MakeService) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["inbox"])
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        await records.register_claimed(session, service.policy, [s], now)
    # ... and the worker dies here, after the commit, before sending.
    await service.sweep(only=[s], now=now)  # leased: nothing yet
    assert await inbox_keys(sessions, person.id) == []
    await service.sweep(only=[s], now=now + service.policy.lease)
    await service.sweep(only=[s], now=now + service.policy.lease)
    assert await inbox_keys(sessions, person.id) == [s.key]
    assert await attempts(sessions, person, s.key) == [("inbox", "delivered")]
