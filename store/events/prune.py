"""Pruning what the event pipeline needs only for a while, one bounded chunk per call, oldest first.

- `event_outbox`: rows every registered consumer (`event_cursors`) has read *and* older than the outbox
  retention. A consumer that stops reading holds rows back: delete its cursor row to release them. With no
  consumer registered at all, age alone decides (a consumer that registers later starts from what is kept).
- `event_dedupe`: message ids of erased contacts older than the dedupe window. (A stored event refuses its
  replays itself, through the events' unique index, for as long as it is kept.)
- `segment_transitions`: rows older than their retention. Membership itself (`segment_members`, with its
  entered/exited times) and the segment events on contacts' timelines are not touched.

Each call is its own short transaction (the caller's), so a prune never holds long locks against ingest.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

TABLES = ("outbox", "dedupe", "transitions")

# Ordered by the xid8 column, qualified: a bare `xid` would name the text output column and sort "999" after "1000".
SLOWEST_CURSOR = ("SELECT xid::text AS xid, outbox_id FROM event_cursors"
                  " ORDER BY event_cursors.xid, outbox_id LIMIT 1")
OUTBOX = """
DELETE FROM event_outbox o USING (
    SELECT id FROM event_outbox
    WHERE created_at < :cutoff AND (xid, id) <= (CAST(:xid AS xid8), :outbox_id)
    ORDER BY xid, id LIMIT :limit
) x WHERE o.id = x.id
"""
DEDUPE = """
DELETE FROM event_dedupe d USING (
    SELECT message_id FROM event_dedupe WHERE received_at < :cutoff ORDER BY received_at LIMIT :limit
) x WHERE d.message_id = x.message_id
"""
TRANSITIONS = """
DELETE FROM segment_transitions t USING (
    SELECT contact_id, id FROM segment_transitions WHERE at < :cutoff ORDER BY at LIMIT :limit
) x WHERE t.contact_id = x.contact_id AND t.id = x.id
"""
# Beyond every possible position: no consumer registered, so no cursor bounds the outbox.
END = {"xid": str(2**63 - 1), "outbox_id": 2**63 - 1}


async def prune_outbox(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` outbox rows created before `cutoff` that every consumer has passed."""
    slowest = (await session.execute(text(SLOWEST_CURSOR))).one_or_none()
    bound = {"xid": slowest.xid, "outbox_id": slowest.outbox_id} if slowest is not None else END
    result = await session.execute(text(OUTBOX), {"cutoff": cutoff, "limit": limit} | bound)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_dedupe(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` message-id dedupe rows received before `cutoff`."""
    result = await session.execute(text(DEDUPE), {"cutoff": cutoff, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


async def prune_transitions(session: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` segment transitions that happened before `cutoff`."""
    result = await session.execute(text(TRANSITIONS), {"cutoff": cutoff, "limit": limit})
    return int(result.rowcount)  # type: ignore[attr-defined]


PRUNERS = {"outbox": prune_outbox, "dedupe": prune_dedupe, "transitions": prune_transitions}
