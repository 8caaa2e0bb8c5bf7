"""Contacts' subscription rules, topic × channel (`*` for any); the rule itself is domain/channels/preferences.py."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.channels.preferences import Rules


async def rules(session: AsyncSession, contact_ids: Sequence[int]) -> dict[int, dict[tuple[str, str], bool]]:
    rows = await session.execute(text(
        "SELECT contact_id, topic, channel, subscribed FROM contact_preferences WHERE contact_id = ANY(:ids)"),
        {"ids": list(contact_ids)})
    found: dict[int, dict[tuple[str, str], bool]] = {}
    for r in rows:
        found.setdefault(r.contact_id, {})[(r.topic, r.channel)] = r.subscribed
    return found


async def replace(session: AsyncSession, contact_id: int, new: Rules) -> None:
    """Make `new` the contact's whole set of rules."""
    await session.execute(text("DELETE FROM contact_preferences WHERE contact_id = :c"), {"c": contact_id})
    await upsert(session, contact_id, new)


async def upsert(session: AsyncSession, contact_id: int, new: Rules) -> None:
    if not new:
        return
    keys = list(new)
    await session.execute(text("""
        INSERT INTO contact_preferences (contact_id, topic, channel, subscribed)
        SELECT :c, * FROM unnest(CAST(:t AS text[]), CAST(:ch AS text[]), CAST(:s AS boolean[]))
        ON CONFLICT (contact_id, topic, channel) DO UPDATE SET subscribed = excluded.subscribed, updated_at = now()
    """), {"c": contact_id, "t": [k[0] for k in keys], "ch": [k[1] for k in keys], "s": [new[k] for k in keys]})


async def exists(session: AsyncSession, contact_id: int) -> bool:
    return (await session.scalar(text("SELECT 1 FROM contacts WHERE id = :c"), {"c": contact_id})) is not None
