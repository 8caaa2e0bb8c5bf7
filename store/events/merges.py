"""The events' step of a contact merge (`store.merges`): the merged-away contact's events and daily aggregates
move to the survivor, keeping their ids."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from store.db import driver

# What a merge does to each events table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "events": "moved to the survivor with their ids; a message sent as both people is kept once",
    "contact_event_daily": "added into the survivor's days",
    "event_outbox": "unchanged: its rows name the merged-away id, and readers follow `contact_merges` to the events",
}
# (loser, survivor) pairs.
MOVE = (
    """WITH moved AS (
        DELETE FROM events e USING unnest(%(losers)s::bigint[], %(survivors)s::bigint[]) AS p(loser, survivor)
        WHERE e.contact_id = p.loser
        RETURNING p.survivor, e.id, e.message_id, e.type, e.event, e.properties, e.context, e.timestamp,
                  e.received_at)
    INSERT INTO events (contact_id, id, message_id, type, event, properties, context, timestamp, received_at)
    SELECT * FROM moved
    ON CONFLICT (contact_id, message_id) DO NOTHING  -- one message sent as both people: it is kept once""",
    """WITH moved AS (
        DELETE FROM contact_event_daily d
        USING unnest(%(losers)s::bigint[], %(survivors)s::bigint[]) AS p(loser, survivor)
        WHERE d.contact_id = p.loser
        RETURNING p.survivor, d.event, d.day, d.count, d.first_at, d.last_at)
    INSERT INTO contact_event_daily AS d (contact_id, event, day, count, first_at, last_at)
    SELECT survivor, event, day, sum(count), min(first_at), max(last_at) FROM moved
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (contact_id, event, day) DO UPDATE SET count = d.count + excluded.count,
        first_at = least(d.first_at, excluded.first_at), last_at = greatest(d.last_at, excluded.last_at)""",
)


async def move(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    """Move each loser's events and daily aggregates to its survivor."""
    pg = await driver(session)
    params = {"losers": [p[0] for p in pairs], "survivors": [p[1] for p in pairs]}
    for statement in MOVE:
        await pg.execute(statement, params)
