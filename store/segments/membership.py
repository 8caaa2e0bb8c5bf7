"""Segments: definitions, materialised membership (entered/exited), set-based refresh, the Postgres index.

Membership always lives here, in Postgres. A refresh is one statement per segment: contacts matching the
rule enter, members that stopped matching exit, and each change is appended to `segment_transitions` and
emitted as a `segment_entered` / `segment_exited` event on the contact's timeline (events, dedupe and outbox
rows in that same statement). Campaigns take audiences with `member_ids_sql`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Text, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.errors import Conflict, NotFound
from domain.segments.rules import (
    MAX_WINDOW_COUNT, InvalidRule, Node, check_no_cycle, dependents, is_time_based, parse_rule, referenced_segments,
    refresh_order,
)
from store.base import Base, created_at
from store.segments.sql import compile_rule


class Segment(Base):
    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    rule: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    time_based: Mapped[bool] = mapped_column(Boolean, default=False)
    refreshed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class SegmentIndex(Protocol):
    """Answers rule queries over contacts: Postgres by default, Elasticsearch when configured."""

    name: str

    async def count(self, session: AsyncSession, rule: Node, now: datetime) -> int: ...

    async def page(self, session: AsyncSession, rule: Node, now: datetime, *, after: int, limit: int) -> list[int]: ...


class PostgresSegmentIndex:
    name = "postgres"

    async def count(self, session: AsyncSession, rule: Node, now: datetime) -> int:
        compiled = compile_rule(rule, now)
        return int(await session.scalar(text(f"SELECT count(*) FROM contacts c WHERE {compiled.where}"),
                                         compiled.params) or 0)

    async def page(self, session: AsyncSession, rule: Node, now: datetime, *, after: int, limit: int) -> list[int]:
        compiled = compile_rule(rule, now)
        rows = await session.scalars(
            text(f"SELECT c.id FROM contacts c WHERE c.id > :after AND {compiled.where} ORDER BY c.id LIMIT :limit"),
            compiled.params | {"after": after, "limit": limit})
        return list(rows.all())


# ---- definitions --------------------------------------------------------------------------------

async def rule_references(session: AsyncSession) -> dict[int, set[int]]:
    rows = await session.execute(select(Segment.id, Segment.rule).where(Segment.kind == "rule"))
    return {sid: referenced_segments(parse_rule(rule)) for sid, rule in rows}


async def validate_rule(session: AsyncSession, raw: Any, *, segment_id: int | None = None) -> Node:
    """Parse the rule and check that the segments it names exist and form no cycle."""
    node = parse_rule(raw)
    named = referenced_segments(node)
    if named:
        # KEY SHARE: a concurrent delete of a named segment waits for this rule to commit, then sees it.
        found = set((await session.scalars(select(Segment.id).where(Segment.id.in_(named))
                                           .with_for_update(key_share=True))).all())
        missing = sorted(named - found)
        if missing:
            raise InvalidRule(f"rule: segment(s) {', '.join(map(str, missing))} do not exist")
        if segment_id is not None:
            check_no_cycle(segment_id, await rule_references(session) | {segment_id: named})
    return node


async def create_segment(session: AsyncSession, *, name: str, kind: str, rule: Any | None,
                         description: str | None = None) -> Segment:
    node = await validate_rule(session, rule) if kind == "rule" else None
    segment = Segment(name=name, kind=kind, rule=rule if kind == "rule" else None, description=description,
                      time_based=bool(node is not None and is_time_based(node)))
    session.add(segment)
    await session.flush()
    return segment


async def get_segment(session: AsyncSession, segment_id: int) -> Segment:
    segment = await session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"Segment {segment_id} does not exist.")
    return segment


async def list_segments(session: AsyncSession, *, after_id: int = 0, limit: int = 100) -> Sequence[Segment]:
    rows = await session.scalars(select(Segment).where(Segment.id > after_id).order_by(Segment.id).limit(limit))
    return rows.all()


# ---- the event rollup ---------------------------------------------------------------------------

ROLLUP = """
INSERT INTO contact_event_recent AS r (contact_id, event, total, d1, d2, d3, more)
SELECT contact_id, event, total, days[1], days[2], days[3], coalesce(days[4:{k}], '{{}}')
FROM (
    SELECT d.contact_id, d.event, sum(d.count) FILTER (WHERE g = 1) AS total,
           (array_agg(d.day ORDER BY d.day DESC))[1:{k}] AS days
    FROM contact_event_daily d CROSS JOIN LATERAL generate_series(1, least(d.count, {k})) g
    WHERE {scope}
    GROUP BY d.contact_id, d.event
) x
ON CONFLICT (contact_id, event) DO UPDATE SET total = excluded.total, d1 = excluded.d1, d2 = excluded.d2,
    d3 = excluded.d3, more = excluded.more
WHERE (r.total, r.d1, r.d2, r.d3, r.more) IS DISTINCT FROM (excluded.total, excluded.d1, excluded.d2, excluded.d3, excluded.more)
"""
ROLLUP_GONE = """
DELETE FROM contact_event_recent r WHERE {scope}
  AND NOT EXISTS (SELECT 1 FROM contact_event_daily d WHERE d.contact_id = r.contact_id AND d.event = r.event)
"""


async def refresh_rollup(session: AsyncSession, touched: Sequence[int] | None = None) -> None:
    """Bring `contact_event_recent` in line with `contact_event_daily` (for `touched` contacts, or all)."""
    params = {"touched": list(touched)} if touched is not None else {}
    daily = "d.contact_id = ANY(:touched)" if touched is not None else "true"
    await session.execute(text(ROLLUP.format(k=MAX_WINDOW_COUNT + 1, scope=daily)), params)
    recent = "r.contact_id = ANY(:touched)" if touched is not None else "true"
    await session.execute(text(ROLLUP_GONE.format(scope=recent)), params)


async def drop_orphans(session: AsyncSession) -> None:
    """Rollup and score rows of contacts that were erased or merged away."""
    for table in ("contact_event_recent", "contact_scores"):
        await session.execute(text(f"DELETE FROM {table} t WHERE NOT EXISTS "
                                   f"(SELECT 1 FROM contacts c WHERE c.id = t.contact_id)"))


# ---- membership ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Changes:
    entered: int
    exited: int


LOCK = "SELECT pg_advisory_xact_lock(hashtext('nudge.segment'), CAST(:sid AS integer))"
# Segment events are handed to consumers in outbox rows of at most this many events (a consumer reads whole
# rows, so one row per million-member refresh would arrive as one million-event batch).
OUTBOX_ROWS = 1000
SYSTEM_CONTEXT = json.dumps({"nudge": {"source": "segments"}})

# Appended to a statement whose CTE `changed (contact_id, kind)` lists membership changes of segment :sid.
# Each change becomes a transition row and a `segment_entered` / `segment_exited` track event with the
# ingest table contract (store/events.py): an `events` row (unique per contact and message id) and
# `event_outbox` rows, all in this statement. Nothing goes to contact_event_daily or contacts.last_seen_at: a system event is
# not the contact's own activity. The message id is made of business ids (domain.segments.rules.transition_message_id).
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

REFRESH = """
WITH matching AS MATERIALIZED (
    SELECT c.id FROM contacts c WHERE {where} {scope_contacts}
), entering AS (
    INSERT INTO segment_members AS m (contact_id, segment_id, entered_at)
    SELECT x.id, :sid, :now FROM matching x
    WHERE NOT EXISTS (SELECT 1 FROM segment_members cur
                      WHERE cur.segment_id = :sid AND cur.contact_id = x.id AND cur.exited_at IS NULL)
    ON CONFLICT (contact_id, segment_id) DO UPDATE SET entered_at = excluded.entered_at, exited_at = NULL
    WHERE m.exited_at IS NOT NULL
    RETURNING m.contact_id
), exiting AS (
    UPDATE segment_members m SET exited_at = :now
    WHERE m.segment_id = :sid AND m.exited_at IS NULL {scope_members}
      AND NOT EXISTS (SELECT 1 FROM matching x WHERE x.id = m.contact_id)
    RETURNING m.contact_id
), changed AS (
    SELECT contact_id, 'segment_entered' AS kind FROM entering
    UNION ALL SELECT contact_id, 'segment_exited' FROM exiting
)""" + EMIT + """
SELECT (SELECT count(*) FROM entering), (SELECT count(*) FROM exiting)
"""

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


def _emit_params(segment_id: int, name: str, now: datetime) -> dict[str, Any]:
    return {"sid": segment_id, "now": now, "outbox_rows": OUTBOX_ROWS, "context": SYSTEM_CONTEXT,
            "props": json.dumps({"segment_id": segment_id, "segment_name": name})}


async def refresh_segment(session: AsyncSession, segment: Segment, now: datetime,
                          touched: Sequence[int] | None = None) -> Changes:
    """Bring a rule segment's membership up to date: all contacts, or only `touched` ones."""
    if segment.kind != "rule":
        return Changes(0, 0)
    await session.execute(text(LOCK), {"sid": segment.id})
    # Read the definition again under the lock: a rule edited (or the segment deleted) since `segment` was
    # loaded has committed by now, and refreshing with the old rule would undo the edit for these contacts.
    current = (await session.execute(text("SELECT name, kind, rule FROM segments WHERE id = :sid"),
                                     {"sid": segment.id})).one_or_none()
    if current is None or current.kind != "rule" or current.rule is None:
        return Changes(0, 0)
    scope = "touched" if touched is not None else None
    compiled = compile_rule(parse_rule(current.rule), now, scope=scope)
    sql = REFRESH.format(
        where=compiled.where,
        scope_contacts="AND c.id = ANY(:touched)" if scope else "",
        scope_members="AND m.contact_id = ANY(:touched)" if scope else "",
    )
    params = compiled.params | _emit_params(segment.id, current.name, now)
    if scope:
        params["touched"] = list(touched or [])
    row = (await session.execute(text(sql), params)).one()
    if touched is None:
        segment.refreshed_at = now
    return Changes(int(row[0]), int(row[1]))


async def refresh_all(session: AsyncSession, now: datetime, *, time_based_only: bool = False,
                      touched: Sequence[int] | None = None) -> dict[int, Changes]:
    """Refresh every rule segment, each after the segments its rule names."""
    segments = {s.id: s for s in (await session.scalars(select(Segment).where(Segment.kind == "rule"))).all()}
    references = {sid: referenced_segments(parse_rule(s.rule)) for sid, s in segments.items()}
    changes: dict[int, Changes] = {}
    stale: set[int] = set()
    for sid in refresh_order(references):
        segment = segments.get(sid)
        if segment is None:
            continue
        # A segment that names a changed segment is stale even if its own rule has no clock in it.
        if time_based_only and not segment.time_based and not (references[sid] & stale):
            continue
        result = await refresh_segment(session, segment, now, touched)
        changes[sid] = result
        if result.entered or result.exited:
            stale.add(sid)
    return changes


async def refresh_with_dependents(session: AsyncSession, segment: Segment, now: datetime) -> dict[int, Changes]:
    """Fully refresh `segment`, then every rule segment that names it (directly or not), in order."""
    references = await rule_references(session)
    wanted = dependents(segment.id, references) | {segment.id}
    rows = {s.id: s for s in (await session.scalars(select(Segment).where(Segment.id.in_(wanted)))).all()}
    changes: dict[int, Changes] = {}
    # The global order, as refresh_all takes these segments' locks: two refreshes never wait on each other in a ring.
    for sid in refresh_order(references):
        if sid in wanted and sid in rows:
            changes[sid] = await refresh_segment(session, rows[sid], now)
    return changes


async def _lock_manual(session: AsyncSession, segment: Segment) -> None:
    """Only manual segments take members by hand; one writer per segment at a time."""
    if segment.kind != "manual":
        raise Conflict(f"Segment {segment.id} is a {segment.kind} segment; only manual segments take members.")
    await session.execute(text(LOCK), {"sid": segment.id})


async def add_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int], now: datetime) -> int:
    await _lock_manual(session, segment)
    entered = await session.scalar(text(ADD), _emit_params(segment.id, segment.name, now) | {"ids": list(contact_ids)})
    return int(entered or 0)


async def remove_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int], now: datetime) -> int:
    await _lock_manual(session, segment)
    return await exit_members(session, segment, contact_ids, now)


async def exit_members(session: AsyncSession, segment: Segment, contact_ids: Sequence[int] | None,
                       now: datetime) -> int:
    """Members leave (these, or all when `contact_ids` is None), each with its transition and event."""
    await session.execute(text(LOCK), {"sid": segment.id})
    ids = list(contact_ids) if contact_ids is not None else None
    exited = await session.scalar(text(REMOVE), _emit_params(segment.id, segment.name, now) | {"ids": ids})
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
        ORDER BY xid, id LIMIT :limit
    """), {"xid": xid, "id": int(tid or 0), "limit": limit})
    return [Transition(f"{r.xid}:{r.id}", r.contact_id, r.segment_id, r.kind, r.at) for r in rows]
