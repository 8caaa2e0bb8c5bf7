"""Identities (userId, anonymousId, email, …) → contact, and the set-based writes a Resolution needs:
creating contacts and attaching identities. Merging two contacts crosses every domain (`store.merges`), so
the caller hands that step in.

Identity creation is serialised per identity with transaction-scoped advisory locks taken in a fixed
order, so two batches that both see a new anonymousId create one contact, not two.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from psycopg import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession

from domain.events import Event, Key, Owner, Resolution, fold_traits, keys_of, resolve
from store.db import driver

LOOKUP = """
    SELECT i.kind, i.value, i.contact_id, c.user_id
    FROM unnest(%s::text[], %s::text[]) AS k(kind, value)
    JOIN identities i ON i.kind = k.kind AND i.value = k.value
    JOIN contacts c ON c.id = i.contact_id
"""
# Contacts written without identities (by SQL elsewhere, or before identities existed) get their
# user_id identity here, before resolution, so they are found rather than duplicated.
HEAL = """
    INSERT INTO identities (kind, value, contact_id)
    SELECT 'user_id', c.user_id, c.id FROM contacts c WHERE c.user_id = ANY(%s::text[])
    ON CONFLICT DO NOTHING
"""
LOCK = """
    SELECT pg_advisory_xact_lock(h) FROM (
        SELECT DISTINCT hashtextextended(k, 7) AS h FROM unnest(%s::text[]) AS k ORDER BY 1
    ) AS keys
"""
RESERVE = "SELECT nextval(pg_get_serial_sequence('contacts', 'id')) FROM generate_series(1, %s)"
CREATE = """
    INSERT INTO contacts (id, user_id) OVERRIDING SYSTEM VALUE
    SELECT * FROM unnest(%s::bigint[], %s::text[])
"""
ATTACH = """
    INSERT INTO identities (kind, value, contact_id)
    SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[]) ON CONFLICT DO NOTHING
"""
TRAITS = """
    UPDATE contacts c SET traits = c.traits || t.traits, email = coalesce(t.email, c.email),
        phone = coalesce(t.phone, c.phone), timezone = coalesce(t.timezone, c.timezone),
        user_id = coalesce(c.user_id, t.user_id), updated_at = now()
    FROM jsonb_to_recordset(%s::jsonb) AS t(id bigint, traits jsonb, email text, phone text, timezone text,
                                            user_id text)
    WHERE c.id = t.id
"""


class MergeContacts(Protocol):
    """Folds each (merged-away, survivor) pair's first contact into the second, in the caller's transaction."""

    async def __call__(self, session: AsyncSession, pairs: Sequence[tuple[int, int]], /) -> None: ...


@lru_cache(maxsize=1024)
def _known_zone(name: str) -> bool:
    if not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


async def lookup(pg: AsyncConnection[Any], keys: Iterable[Key]) -> dict[Key, Owner]:
    keys = list(keys)
    if not keys:
        return {}
    cur = await pg.execute(LOOKUP, ([k for k, _ in keys], [v for _, v in keys]))
    return {(kind, value): Owner(contact_id, user_id) for kind, value, contact_id, user_id in await cur.fetchall()}


async def find_contact(session: AsyncSession, kind: str, value: str) -> int | None:
    owners = await lookup(await driver(session), [(kind, value)])
    owner = owners.get((kind, value))
    return owner.contact_id if owner else None


async def attach(pg: AsyncConnection[Any], rows: Sequence[tuple[str, str, int]]) -> None:
    if rows:
        await pg.execute(ATTACH, ([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]))


async def apply(session: AsyncSession, events: Sequence[Event], *, merge: MergeContacts) -> list[int]:
    """Resolve every event to a contact, creating contacts as needed and merging them with `merge`; the contact
    per event."""
    pg = await driver(session)
    await pg.execute(HEAL, (sorted({e.user_id for e in events if e.user_id is not None}),))
    known = await lookup(pg, keys_of(events))
    resolution = resolve(events, known)
    locked: set[Key] = set()
    for _ in range(5):
        fresh = {k for _, k in resolution.new_keys(known)} - locked
        if not fresh:
            break
        await pg.execute(LOCK, ([f"{k}:{v}" for k, v in sorted(fresh)],))
        locked |= fresh
        found = await lookup(pg, fresh)  # created by a batch that held the lock before us
        if not found:
            break
        known |= found
        resolution = resolve(events, known)
    contact_ids = await _write(session, resolution, known, merge)
    event_contact = [contact_ids[i] for i in resolution.event_person]
    await _traits(pg, events, event_contact, resolution, contact_ids)
    return event_contact


async def _write(session: AsyncSession, resolution: Resolution, known: dict[Key, Owner],
                 merge: MergeContacts) -> list[int]:
    pg = await driver(session)
    persons = resolution.persons
    creating = [i for i, p in enumerate(persons) if p.contact_id is None]
    contact_ids = [p.contact_id or 0 for p in persons]
    if creating:
        cur = await pg.execute(RESERVE, (len(creating),))
        for i, (new_id,) in zip(creating, await cur.fetchall(), strict=True):
            contact_ids[i] = new_id
        await pg.execute(CREATE, ([contact_ids[i] for i in creating], [persons[i].user_id for i in creating]))
    await merge(session, [(loser, p.contact_id) for p in persons if p.contact_id is not None for loser in p.merged])
    await attach(pg, [(k[0], k[1], contact_ids[i]) for i, k in resolution.new_keys(known)])
    return contact_ids


async def _traits(pg: AsyncConnection[Any], events: Sequence[Event], event_contact: Sequence[int],
                  resolution: Resolution, contact_ids: Sequence[int]) -> None:
    folded = fold_traits(events, event_contact)
    gaining = {contact_ids[i]: p.user_id for i, p in enumerate(resolution.persons) if p.gains_user_id}
    attached: dict[Key, int] = {}
    for event, contact in zip(events, event_contact, strict=True):
        for key in event.attached_keys():
            attached.setdefault(key, contact)
    await attach(pg, [(k[0], k[1], c) for k, c in attached.items()])
    if not folded and not gaining:
        return
    timezones = {c: e.context["timezone"] for e, c in zip(events, event_contact, strict=True)
                 if isinstance(e.context.get("timezone"), str) and _known_zone(e.context["timezone"])}
    rows = []
    for contact in sorted(folded.keys() | gaining.keys()):
        traits = folded.get(contact, {})
        email, phone = traits.get("email"), traits.get("phone")
        rows.append({"id": contact, "traits": traits, "user_id": gaining.get(contact),
                     "email": email if isinstance(email, str) else None,
                     "phone": phone if isinstance(phone, str) else None,
                     "timezone": timezones.get(contact) if contact in folded else None})
    await pg.execute(TRAITS, (orjson.dumps(rows).decode(),))
