"""A contact's timeline: their events, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver


async def contact_events(session: AsyncSession, contact_id: int, *, before: tuple[datetime, int] | None,
                         limit: int) -> list[dict[str, Any]]:
    """A contact's timeline, newest first by event time (keyset on (timestamp, id)). Not by id alone: ids
    come from per-connection sequence caches, so concurrent writers hand them out out of time order."""
    ts, eid = before if before is not None else (None, None)
    pg = await driver(session)
    cur = await pg.execute(
        "SELECT id, message_id, type, event, properties, context, timestamp, received_at FROM events"
        " WHERE contact_id = %s AND (%s::timestamptz IS NULL OR (timestamp, id) < (%s::timestamptz, %s::bigint))"
        " ORDER BY timestamp DESC, id DESC LIMIT %s",
        (contact_id, ts, ts, eid, limit))
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in await cur.fetchall()]


