"""Erasure and contact merges reach every channels table: erasure removes what identifies the person (inbox,
preferences, cap counts, provider ids, addresses) and keeps the counts; a merge moves what the person chose and
received to the survivor."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.channels.caps import parse_caps
from store.channels import preferences, suppressions
from store.db import transaction
from store.erasure import erase
from store.merges import merge_contacts
from tests.store.channels.conftest import MakeService, Person, make_person, step

COUNTS = """
    SELECT (SELECT count(*) FROM inbox_messages WHERE contact_id = :c) AS inbox,
           (SELECT count(*) FROM contact_preferences WHERE contact_id = :c) AS preferences,
           (SELECT count(*) FROM frequency_log WHERE contact_id = :c) AS caps,
           (SELECT count(*) FROM delivery_provider_ids WHERE contact_id = :c) AS provider_ids,
           (SELECT count(*) FROM suppressions WHERE contact_id = :c) AS suppressions,
           (SELECT count(*) FROM delivery_attempts WHERE contact_id = :c) AS attempts,
           (SELECT count(*) FROM delivery_attempts WHERE contact_id = :c
              AND (provider_message_id IS NOT NULL OR address_hash IS NOT NULL)) AS identifying,
           (SELECT count(*) FROM delivery_plans WHERE contact_id = :c AND content <> '{}') AS content
"""


async def counts(sessions: async_sessionmaker[AsyncSession], contact_id: int) -> dict[str, int]:
    async with sessions() as s:
        return dict((await s.execute(text(COUNTS), {"c": contact_id})).one()._mapping)


async def give_everything(sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
                          person: Person) -> None:
    async with transaction(sessions) as s:
        await preferences.upsert(s, person.id, {("news", "sms"): False})
        await suppressions.add_address(s, "email", f"old-{person.email}", "bounce", contact_id=person.id)
    await make_service(caps=parse_caps("*:5/1d")).send([step(person, ["inbox"]), step(person, ["email"])])


async def test_erasure_covers_every_channels_table(sessions: async_sessionmaker[AsyncSession],
                                                   make_service: MakeService) -> None:
    person = await make_person(sessions)
    await give_everything(sessions, make_service, person)
    before = await counts(sessions, person.id)
    assert all(before[k] for k in ("inbox", "preferences", "caps", "provider_ids", "suppressions", "content"))
    async with transaction(sessions) as s:
        await erase(s, person.id, now=datetime.now(UTC))
    after = await counts(sessions, person.id)
    assert after == {"inbox": 0, "preferences": 0, "caps": 0, "provider_ids": 0, "suppressions": 0,
                     "attempts": before["attempts"], "identifying": 0, "content": 0}
    async with sessions() as s:  # the bounced address stays suppressed, anonymously
        assert await s.scalar(text("SELECT count(*) FROM suppressions WHERE note IS NULL AND contact_id IS NULL "
                                   "AND reason = 'bounce'")) >= 1


async def test_a_merge_moves_preferences_caps_inbox_and_suppressions(sessions: async_sessionmaker[AsyncSession],
                                                                     make_service: MakeService) -> None:
    gone, survivor = await make_person(sessions), await make_person(sessions)
    await give_everything(sessions, make_service, gone)
    async with transaction(sessions) as s:
        await preferences.upsert(s, survivor.id, {("news", "sms"): True})  # the survivor's own rule wins
        await merge_contacts(s, [(gone.id, survivor.id)])
    moved = await counts(sessions, survivor.id)
    assert (moved["inbox"], moved["preferences"], moved["caps"], moved["suppressions"]) == (1, 1, 2, 1)
    async with sessions() as s:
        assert (await preferences.rules(s, [survivor.id]))[survivor.id] == {("news", "sms"): True}
    left = await counts(sessions, gone.id)
    assert (left["inbox"], left["preferences"], left["caps"]) == (0, 0, 0)
