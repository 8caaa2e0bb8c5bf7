"""The events' step of a right-to-erasure (`store.erasure`): the contact's events and their aggregates go; their
message ids are remembered for the dedupe window (they hold no personal data), so a replay cannot resurrect it."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver

# What erasure does to each events table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "events": "deleted; their message ids go to `event_dedupe` for the dedupe window",
    "contact_event_daily": "deleted",
    "event_outbox": "rows keep bare contact and event ids (no personal data) until the prune; readers join "
                    "`events`, so erased events are never handed out",
}
ERASE = (
    # The erased person's message ids outlive their events for the dedupe window, so a replay cannot recreate them.
    "INSERT INTO event_dedupe (message_id, received_at) SELECT message_id, now() FROM events"
    " WHERE contact_id = ANY(%(ids)s) ON CONFLICT (message_id) DO UPDATE SET received_at = excluded.received_at",
    "DELETE FROM events WHERE contact_id = ANY(%(ids)s)",
    "DELETE FROM contact_event_daily WHERE contact_id = ANY(%(ids)s)",
)


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> None:
    """Erase the events of the contact and of the contacts merged into it."""
    pg = await driver(session)
    for statement in ERASE:
        await pg.execute(statement, {"ids": list(contact_ids)})
