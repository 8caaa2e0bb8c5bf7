"""How a membership change is recorded, and how consumers read the record.

Each change (a contact enters or exits a segment) is appended to `segment_transitions` and emitted as a
`segment_entered` / `segment_exited` event on the contact's timeline, in the statement that makes the change
(`EMIT`). Writers of one segment's membership serialise on `lock_membership`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Segment ids are bigint, the lock's second key an integer: ids past 2^31 fold onto smaller ones (such segments
# then serialise with each other, which is safe), every id below keeps the key it always had.
LOCK = "SELECT pg_advisory_xact_lock(hashtext('nudge.segment'), CAST(CAST(:sid AS bigint) % 2147483648 AS integer))"
# Segment events are handed to consumers in outbox rows of at most this many events (a consumer reads whole
# rows, so one row per million-member refresh would arrive as one million-event batch).
OUTBOX_ROWS = 1000
SYSTEM_CONTEXT = json.dumps({"nudge": {"source": "segments"}})

# Appended to a statement whose CTE `changed (contact_id, kind)` lists membership changes of segment :sid.
# Each change becomes a transition row and a `segment_entered` / `segment_exited` track event with the
# ingest table contract (store/events/insert.py): an `events` row (unique per contact and message id) and
# `event_outbox` rows, all in this statement. Nothing goes to contact_event_daily or contacts.last_seen_at: a
# system event is not the contact's own activity. The message id is made of business ids
# (domain.segments.rules.transition_message_id).
EMIT = """, logged AS (
    INSERT INTO segment_transitions (contact_id, segment_id, kind, at)
    SELECT contact_id, :sid, kind, :now FROM changed
    RETURNING contact_id, id, kind
), fresh AS (
    -- No dedupe probe: the transition id was just drawn from a sequence, so the message id is new (a clash,
    -- possible only after a sequence reset, fails the statement; run again, it draws new ids).
    -- A contact erased or merged away since it joined exits without an event: nobody is there to tell.
    SELECT l.contact_id, l.kind, format('segment:%s:%s:%s:%s', :sid, l.contact_id, substr(l.kind, 9), l.id) AS m
    FROM logged l WHERE EXISTS (SELECT 1 FROM contacts c WHERE c.id = l.contact_id)
), emitted AS (
    INSERT INTO events (contact_id, id, message_id, type, event, properties, context, timestamp, received_at)
    SELECT f.contact_id, nextval('events_id_seq'), f.m, 'track', f.kind, CAST(:props AS jsonb),
           CAST(:context AS jsonb), :now, :now
    FROM fresh f ORDER BY f.contact_id
    RETURNING contact_id, id
), boxed AS (
    INSERT INTO event_outbox (contact_ids, event_ids)
    SELECT array_agg(contact_id ORDER BY id), array_agg(id ORDER BY id)
    FROM (SELECT contact_id, id, (row_number() OVER (ORDER BY id) - 1) / :outbox_rows AS part FROM emitted) e
    GROUP BY part ORDER BY part
)"""


def emit_params(segment_id: int, name: str, now: datetime) -> dict[str, Any]:
    """The parameters `EMIT` needs."""
    return {"sid": segment_id, "now": now, "outbox_rows": OUTBOX_ROWS, "context": SYSTEM_CONTEXT,
            "props": json.dumps({"segment_id": segment_id, "segment_name": name})}


async def lock_membership(session: AsyncSession, segment_id: int) -> None:
    """One writer of a segment's membership at a time, until the transaction ends."""
    await session.execute(text(LOCK), {"sid": segment_id})


@dataclass(frozen=True)
class Transition:
    position: str  # "<xid>:<id>", opaque to consumers
    contact_id: int
    segment_id: int
    kind: str
    at: datetime


async def read_transitions(session: AsyncSession, *, after: str = "0:0", limit: int = 1000) -> list[Transition]:
    """Committed enter/exit transitions after `after`, oldest first (same visibility rule as the event outbox)."""
    xid, _, tid = after.partition(":")
    rows = await session.execute(text("""
        SELECT xid::text AS xid, id, contact_id, segment_id, kind, at FROM segment_transitions
        WHERE (xid, id) > (CAST(:xid AS xid8), :id) AND xid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY segment_transitions.xid, id LIMIT :limit  -- the xid8 column, not the text output of that name
    """), {"xid": xid, "id": int(tid or 0), "limit": limit})
    return [Transition(f"{r.xid}:{r.id}", r.contact_id, r.segment_id, r.kind, r.at) for r in rows]
