"""Segment members: add and remove (manual segments), exit, look up a list's contacts, count and page current
members, and the set-based snapshot other domains take audiences from (`member_ids_sql`).

Every change is recorded as a transition and a `segment_entered` / `segment_exited` event
(`store.segments.transitions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict
from store.segments.models import Segment
from store.segments.transitions import EMIT, emit_params, lock_membership

ADD = """
WITH entering AS (
    INSERT INTO segment_members AS m (contact_id, segment_id, entered_at)
    SELECT c.id, :sid, :now FROM contacts c WHERE c.id = ANY(:ids)
    ON CONFLICT (contact_id, segment_id) DO UPDATE SET entered_at = excluded.entered_at, exited_at = NULL
    WHERE m.exited_at IS NOT NULL
    RETURNING m.contact_id
), changed AS (
    SELECT contact_id, 'segment_entered' AS kind FROM entering
)""" + EMIT + """
SELECT count(*) FROM entering
"""

# `:ids` NULL: every current member (the segment is being deleted).
REMOVE = """
WITH exiting AS (
    UPDATE segment_members m SET exited_at = :now
    WHERE m.segment_id = :sid AND m.exited_at IS NULL
      AND (CAST(:ids AS bigint[]) IS NULL OR m.contact_id = ANY(CAST(:ids AS bigint[])))
    RETURNING m.contact_id
), changed AS (
    SELECT contact_id, 'segment_exited' AS kind FROM exiting
)""" + EMIT + """
SELECT count(*) FROM exiting
"""

ListColumn = Literal["contact_id", "user_id", "email"]


async def _lock_manual(session: AsyncSession, segment: Segment) -> None:
    """Only manual segments take members by hand; one writer per segment at a time."""
    if segment.kind != "manual":
        raise Conflict(f"Segment {segment.id} is a {segment.kind} segment; only manual segments take members.")
    await lock_membership(session, segment.id)


async def add_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int], now: datetime) -> int:
    await _lock_manual(session, segment)
    entered = await session.scalar(text(ADD), emit_params(segment.id, segment.name, now) | {"ids": list(contact_ids)})
    return int(entered or 0)


async def remove_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int], now: datetime) -> int:
    await _lock_manual(session, segment)
    return await exit_members(session, segment, contact_ids, now)


async def exit_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int] | None,
                       now: datetime) -> int:
    """Members leave (these, or all when `contact_ids` is None), each with its transition and event."""
    await lock_membership(session, segment.id)
    ids = list(contact_ids) if contact_ids is not None else None
    exited = await session.scalar(text(REMOVE), emit_params(segment.id, segment.name, now) | {"ids": ids})
    return int(exited or 0)


async def resolve_contacts(session: AsyncSession, *, ids: Sequence[int] = (), user_ids: Sequence[str] = (),
                           emails: Sequence[str] = ()) -> list[int]:
    """Contact ids for a CSV upload's rows: by id, user_id or (case-insensitive) email."""
    rows = await session.scalars(text("""
        SELECT id FROM contacts WHERE id = ANY(:ids)
        UNION SELECT id FROM contacts WHERE user_id = ANY(:uids)
        UNION SELECT id FROM contacts WHERE lower(email) = ANY(:emails)
    """), {"ids": list(ids), "uids": list(user_ids), "emails": [e.lower() for e in emails]})
    return sorted(rows.all())


async def find_listed(session: AsyncSession, column: ListColumn, values: Sequence[str]) -> tuple[list[int], list[str]]:
    """The contacts a list names in one column (contact ids given as digits), and the values that match nobody."""
    if column == "contact_id":
        ids = await resolve_contacts(session, ids=[int(v) for v in values])
        known = set(ids)
        return ids, [v for v in values if int(v) not in known]
    if column == "user_id":
        ids = await resolve_contacts(session, user_ids=values)
        found = set((await session.scalars(text("SELECT user_id FROM contacts WHERE id = ANY(:ids)"),
                                           {"ids": ids})).all())
        return ids, [v for v in values if v not in found]
    ids = await resolve_contacts(session, emails=values)
    found = set((await session.scalars(text("SELECT lower(email) FROM contacts WHERE id = ANY(:ids)"),
                                       {"ids": ids})).all())
    return ids, [v for v in values if v.lower() not in found]


async def import_members(session: AsyncSession, segment: Segment, column: ListColumn, values: Sequence[str],
                         now: datetime) -> tuple[int, list[str]]:
    """Add an uploaded list's contacts to a manual segment: how many entered, and the values that matched nobody."""
    ids, unknown = await find_listed(session, column, values)
    return await add_members(session, segment, ids, now), unknown


def member_ids_sql(segment_id: int) -> tuple[str, dict[str, Any]]:
    """A set-based snapshot of current members for other domains (campaign audiences):
    `INSERT INTO deliveries (...) SELECT ... FROM (<sql>) a JOIN contacts c ON c.id = a.contact_id`."""
    return ("SELECT m.contact_id FROM segment_members m WHERE m.segment_id = :segment_id AND m.exited_at IS NULL",
            {"segment_id": segment_id})


async def member_count(session: AsyncSession, segment_id: int) -> int:
    sql, params = member_ids_sql(segment_id)
    return int(await session.scalar(text(f"SELECT count(*) FROM ({sql}) a"), params) or 0)


@dataclass(frozen=True)
class Member:
    contact_id: int
    entered_at: datetime


async def members_page(session: AsyncSession, segment_id: int, *, after: int, limit: int) -> list[Member]:
    rows = await session.execute(text("""
        SELECT contact_id, entered_at FROM segment_members
        WHERE segment_id = :sid AND exited_at IS NULL AND contact_id > :after
        ORDER BY contact_id LIMIT :limit
    """), {"sid": segment_id, "after": after, "limit": limit})
    return [Member(r.contact_id, r.entered_at) for r in rows]
