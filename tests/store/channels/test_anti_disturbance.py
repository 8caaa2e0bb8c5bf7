"""Frequency caps under concurrency, quiet hours in two time zones, suppressions (and bounces feeding them),
preferences, and the email's one-click unsubscribe headers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.mailbox import read_mailbox
from domain.channels.caps import parse_caps
from domain.channels.quiet import QuietHours
from nudge.embedded import MailSink
from store.channels import inbox, preferences, receipts, records, suppressions
from store.channels.addresses import address_hash
from store.db import transaction
from tests.store.channels.conftest import MakeService, attempts, make_person, step


async def inbox_keys(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> list[str]:
    async with sessions() as s:
        found, _ = await inbox.listing(s, contact_id, now=datetime.now(UTC), before=None, limit=100,
                                       unread_only=False)
    return [m.key for m in found]


async def test_racing_senders_for_the_last_cap_slot_send_one_message(sessions: async_sessionmaker[AsyncSession],
                                                                     make_service: MakeService) -> None:
    service = make_service(caps=parse_caps("*:1/1d"))
    person = await make_person(sessions)
    steps = [step(person, ["inbox"], key=f"delivery:race{i}:s:{person.id}") for i in range(12)]
    await asyncio.gather(*(make_service(caps=parse_caps("*:1/1d")).send([s]) for s in steps))
    assert len(await inbox_keys(sessions, person.id)) == 1
    outcomes = [(await attempts(sessions, person, s.key))[0][1] for s in steps]
    assert sorted(outcomes) == ["delivered"] + ["suppressed"] * 11
    transactional = step(person, ["inbox"], transactional=True)  # exempt
    await service.send([transactional])
    assert len(await inbox_keys(sessions, person.id)) == 2


async def test_quiet_hours_defer_in_the_contacts_zone_never_drop(sessions: async_sessionmaker[AsyncSession],
                                                                 make_service: MakeService) -> None:
    service = make_service(quiet=QuietHours(time(21), time(8)))
    shanghai = await make_person(sessions, timezone="Asia/Shanghai")
    new_york = await make_person(sessions, timezone="America/New_York")
    # 14:00 UTC two days ahead (so no other sweeper reaches it first): 22:00 in Shanghai (no DST), 09:00 or 10:00
    # in New York.
    at = datetime.combine(datetime.now(UTC).date() + timedelta(days=2), time(14), tzinfo=UTC)
    a, b = step(shanghai, ["inbox"]), step(new_york, ["inbox"])
    await service.send([a, b], now=at)
    assert await inbox_keys(sessions, new_york.id) == [b.key]
    assert await inbox_keys(sessions, shanghai.id) == []
    await service.sweep(only=[a], now=at + timedelta(hours=9, minutes=59))  # 07:59 in Shanghai
    assert await inbox_keys(sessions, shanghai.id) == []
    await service.sweep(only=[a], now=at + timedelta(hours=10))  # 08:00 in Shanghai
    assert await inbox_keys(sessions, shanghai.id) == [a.key]


async def test_a_suppressed_or_unsubscribed_channel_moves_to_the_next(sessions: async_sessionmaker[AsyncSession],
                                                                     make_service: MakeService,
                                                                     mail_sink: MailSink) -> None:
    service = make_service()
    person = await make_person(sessions)
    async with transaction(sessions) as s:
        await suppressions.add_address(s, "email", person.email.upper(), "manual")
    first = step(person, ["email", "inbox"])
    await service.send([first])
    assert await attempts(sessions, person, first.key) == [("email", "suppressed"), ("inbox", "delivered")]

    other = await make_person(sessions)
    async with transaction(sessions) as s:
        await preferences.upsert(s, other.id, {("news", "email"): False})
    news, receipt = step(other, ["email", "inbox"], topic="news"), step(other, ["email"], topic="news",
                                                                       transactional=True)
    await service.send([news, receipt])
    assert await attempts(sessions, other, news.key) == [("email", "suppressed"), ("inbox", "delivered")]
    assert await attempts(sessions, other, receipt.key) == [("email", "sent")]


async def test_a_bounce_suppresses_the_address_and_an_email_bounce_still_falls_back(
        sessions: async_sessionmaker[AsyncSession], make_service: MakeService) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["email", "inbox"])
    await service.send([s])
    assert await attempts(sessions, person, s.key) == [("email", "sent")]
    async with sessions() as session:
        (sent,) = await records.attempts_of(session, person.id, key=s.key)
    now = datetime.now(UTC)
    async with transaction(sessions) as session:
        applied = await receipts.apply_callback(session, "test", [receipts.Report(
            "email", "bounced", now, sent.provider_message_id, "550 no such user", "bounce-1")], now)
    assert applied.matched == 1
    async with sessions() as session:
        listed = await suppressions.suppressed(session, [("email", address_hash("email", person.email))])
    assert listed == {("email", address_hash("email", person.email)): "bounce"}
    await service.sweep(only=[s])
    assert await attempts(sessions, person, s.key) == [("email", "bounced"), ("inbox", "delivered")]


async def test_receipts_out_of_order_and_duplicated_never_move_backwards(
        sessions: async_sessionmaker[AsyncSession], make_service: MakeService) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["email"])
    await service.send([s])
    async with sessions() as session:
        pid = await session.scalar(text("SELECT provider_message_id FROM delivery_attempts WHERE key = :k"),
                                   {"k": s.key})
    now = datetime.now(UTC)
    for status in ("clicked", "delivered", "opened", "delivered", "failed", "sent"):
        async with transaction(sessions) as session:
            await receipts.apply_callback(session, "test", [receipts.Report("email", status, now, pid)], now)
    assert await attempts(sessions, person, s.key) == [("email", "clicked")]


async def test_email_carries_one_click_unsubscribe_headers(sessions: async_sessionmaker[AsyncSession],
                                                           make_service: MakeService, mail_sink: MailSink) -> None:
    service = make_service()
    person = await make_person(sessions)
    s = step(person, ["email"], topic="news")
    await service.send([s])
    (mail,) = [m for m in read_mailbox(mail_sink.directory) if m["To"] == person.email]
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/u/" in mail["List-Unsubscribe"]
