"""Positions are ordered by number, not by their text: xids cross from 999 to 1000 in every young database, and a
text order would prune rows a slow consumer has not read, and skip segment transitions past a page boundary.
Each test works inside a transaction it rolls back, with xids (single and double digit) below every real one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.events.prune import prune_outbox
from store.segments.transitions import read_transitions


async def test_the_prune_stops_at_the_numerically_slowest_cursor(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin() as tx:
        await s.execute(text("INSERT INTO event_outbox (xid, contact_ids, event_ids, created_at)"
                             " VALUES ('9', '{1}', '{1}', :old), ('10', '{1}', '{2}', :old)"),
                        {"old": datetime(2000, 1, 1, tzinfo=UTC)})
        await s.execute(text("INSERT INTO event_cursors (consumer, xid, outbox_id)"
                             " VALUES ('test-slow', '9', 0), ('test-fast', '10', 0)"))
        deleted = await prune_outbox(s, datetime.now(UTC) + timedelta(days=1), limit=1000)
        left = await s.scalar(text("SELECT count(*) FROM event_outbox WHERE xid IN ('9', '10')"))
        await tx.rollback()
    assert deleted == 0 and left == 2  # "10" sorts before "9" as text: that cursor is not the slowest


async def test_transitions_are_read_in_xid_order_across_a_digit_boundary(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s, s.begin() as tx:
        await s.execute(text("INSERT INTO segment_transitions (contact_id, xid, segment_id, kind, at)"
                             " VALUES (1, '9', -1, 'segment_entered', now()), (1, '10', -1, 'segment_exited', now())"))
        first = await read_transitions(s, after="8:0", limit=1)
        second = await read_transitions(s, after=first[0].position, limit=1)
        await tx.rollback()
    assert [first[0].kind, second[0].kind] == ["segment_entered", "segment_exited"]
    assert first[0].position.startswith("9:") and second[0].position.startswith("10:")
