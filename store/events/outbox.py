"""The event outbox: committed events handed to downstream consumers in order, after commit, surviving restarts.

Ingest writes one `event_outbox` row per batch (`store.events.insert`). Consumers (task progress, journey
triggers, segment refresh) read it like this:

    async with transaction(sessions) as s:
        batch = await read_new_events(s, "journeys", limit=1000)
        ...handle batch (idempotently, keyed by event id)...
        if batch:
            await advance_cursor(s, "journeys", batch[-1].position)

A consumer's first read starts at the beginning of the outbox. Positions are (transaction id, outbox
id); only outbox rows of transactions older than every running one are read, so a slow transaction
can never commit rows behind a cursor that has already passed them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver

READ = """
WITH cur AS (
    SELECT coalesce((SELECT xid FROM event_cursors WHERE consumer = %(consumer)s), '0'::xid8) AS xid,
           coalesce((SELECT outbox_id FROM event_cursors WHERE consumer = %(consumer)s), 0) AS id
), batches AS (
    SELECT o.*, sum(o.size) OVER (ORDER BY o.xid, o.id) - o.size AS before
    FROM (
        SELECT o.id, o.xid, o.size, o.contact_ids, o.event_ids FROM event_outbox o, cur
        WHERE (o.xid, o.id) > (cur.xid, cur.id) AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY o.xid, o.id LIMIT %(limit)s
    ) o
)
SELECT b.xid::text, b.id, e.contact_id, e.id, e.message_id, e.type, e.event, e.properties, e.context,
       e.timestamp, e.received_at
FROM batches b
CROSS JOIN LATERAL unnest(b.contact_ids, b.event_ids) WITH ORDINALITY AS u(contact_id, event_id, n)
CROSS JOIN LATERAL (  -- LIMIT 1 keeps this a key lookup per event: a hash join would scan every event
    SELECT e.* FROM events e
    WHERE e.contact_id = coalesce((SELECT m.merged_into FROM contact_merges m WHERE m.contact_id = u.contact_id),
                                  u.contact_id)
      AND e.id = u.event_id
    LIMIT 1
) e
WHERE b.before < %(limit)s
ORDER BY b.xid, b.id, u.n
"""

ADVANCE = """
INSERT INTO event_cursors (consumer, xid, outbox_id) VALUES (%s, %s::xid8, %s)
ON CONFLICT (consumer) DO UPDATE SET xid = excluded.xid, outbox_id = excluded.outbox_id, updated_at = now()
"""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    xid: int
    outbox_id: int


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    position: Position
    contact_id: int
    id: int
    message_id: str
    type: str
    event: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: datetime
    received_at: datetime


async def read_new_events(session: AsyncSession, consumer: str, limit: int = 1000) -> list[OutboxEvent]:
    """Committed events after `consumer`'s cursor, oldest first; whole batches, about `limit` events."""
    pg = await driver(session)
    cur = await pg.execute(READ, {"consumer": consumer, "limit": limit})
    return [OutboxEvent(Position(int(r[0]), r[1]), *r[2:]) for r in await cur.fetchall()]


async def advance_cursor(session: AsyncSession, consumer: str, position: Position) -> None:
    """Record that `consumer` has handled everything up to and including `position`."""
    await (await driver(session)).execute(ADVANCE, (consumer, str(position.xid), position.outbox_id))


