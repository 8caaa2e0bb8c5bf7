"""The contacts' step of a right-to-erasure (`store.erasure`): the lock that starts it, the identities, merge
forwards and contact rows that end it, and the `contact_erasures` record that remains."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver

# What erasure does to each contacts table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "contacts": "locked first, deleted last (with the contacts merged into it): see store/erasure.py for why "
                "deleted rather than kept as a tombstone",
    "identities": "deleted",
    "contact_merges": "forwards into the contact deleted",
    "contact_erasures": "one row records when, and how many rows went, with no personal data",
}
ERASE = (
    "DELETE FROM identities WHERE contact_id = ANY(%(ids)s)",
    "DELETE FROM contact_merges WHERE merged_into = ANY(%(ids)s)",
    "DELETE FROM contacts WHERE id = ANY(%(ids)s)",
)


async def lock(session: AsyncSession, contact_id: int) -> list[int] | None:
    """Lock the contact (so ingest, merges and a second erasure of it wait); its id plus the ids of the
    anonymous contacts merged into it, or None if there is no such contact."""
    found = await session.scalar(text("SELECT id FROM contacts WHERE id = :c FOR UPDATE"), {"c": contact_id})
    if found is None:
        return None
    merged = await session.scalars(text("SELECT contact_id FROM contact_merges WHERE merged_into = :c"),
                                   {"c": contact_id})
    return [contact_id, *merged.all()]


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> None:
    """Delete the identities, forwards and rows of the locked contact and of the contacts merged into it."""
    pg = await driver(session)
    for statement in ERASE:
        await pg.execute(statement, {"ids": list(contact_ids)})


async def record(session: AsyncSession, contact_id: int, *, now: datetime, removed: Mapping[str, int]) -> None:
    await session.execute(text("""
        INSERT INTO contact_erasures (contact_id, erased_at, removed) VALUES (:c, :t, CAST(:r AS jsonb))
    """), {"c": contact_id, "t": now, "r": orjson.dumps(dict(removed)).decode()})


async def erased_at(session: AsyncSession, contact_id: int) -> datetime | None:
    """When a contact was erased (None: never)."""
    value: datetime | None = await session.scalar(
        text("SELECT erased_at FROM contact_erasures WHERE contact_id = :c"), {"c": contact_id})
    return value
