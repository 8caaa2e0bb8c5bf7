"""What a contact merge (`store.merges`) does to channels data: what the person chose, what they are counted for
and their inbox follow them to the survivor; the delivery records stay with the id they were sent to."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What a merge does to each channels table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "delivery_plans": "stay under the merged-away id, as `deliveries` do; an unfinished one finds no address on its "
                      "next channel (the contact is gone) and ends",
    "delivery_attempts": "stay under the merged-away id: they are what was sent to it",
    "delivery_provider_ids": "stay: receipts still find the attempts they are about",
    "suppressions": "the contact id moves to the survivor (the entries are keyed by address anyway)",
    "contact_preferences": "move to the survivor; where both have a rule for a topic and channel, the survivor's wins",
    "frequency_log": "moves to the survivor: caps count messages per person",
    "inbox_messages": "move to the survivor (same ids); a message both got under one key keeps the survivor's",
}


async def move(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    """Fold the channel data of each (merged-away, survivor) pair's first contact into the second."""
    if not pairs:
        return
    p = {"f": [a for a, _ in pairs], "t": [b for _, b in pairs]}
    pairs_sql = "unnest(CAST(:f AS bigint[]), CAST(:t AS bigint[])) AS m(f, t)"
    await session.execute(text(f"""
        UPDATE suppressions s SET contact_id = m.t FROM {pairs_sql} WHERE s.contact_id = m.f
    """), p)
    await session.execute(text(f"""
        WITH gone AS (DELETE FROM contact_preferences c USING {pairs_sql} WHERE c.contact_id = m.f
                      RETURNING m.t, c.topic, c.channel, c.subscribed, c.updated_at)
        INSERT INTO contact_preferences (contact_id, topic, channel, subscribed, updated_at)
        SELECT * FROM gone ON CONFLICT DO NOTHING
    """), p)
    await session.execute(text(f"""
        WITH gone AS (DELETE FROM frequency_log l USING {pairs_sql} WHERE l.contact_id = m.f
                      RETURNING m.t, l.key, l.channel, l.at)
        INSERT INTO frequency_log (contact_id, key, channel, at) SELECT * FROM gone ON CONFLICT DO NOTHING
    """), p)
    await session.execute(text(f"""
        WITH gone AS (DELETE FROM inbox_messages i USING {pairs_sql} WHERE i.contact_id = m.f
                      RETURNING m.t, i.id, i.key, i.title, i.body, i.display, i.data, i.created_at, i.read_at,
                                i.deleted_at, i.expires_at)
        INSERT INTO inbox_messages (contact_id, id, key, title, body, display, data, created_at, read_at, deleted_at,
                                    expires_at) OVERRIDING SYSTEM VALUE
        SELECT * FROM gone ON CONFLICT DO NOTHING
    """), p)
