"""Refreshing rule segments: membership follows the rule, in one statement per segment.

Membership always lives in Postgres. A refresh makes contacts matching the rule enter and members that
stopped matching exit; each change is recorded as a transition and an event (`store.segments.transitions`).
Before rules are evaluated, the per-contact event rollup (`contact_event_recent`) and scores are brought up
to date, so event-count and score conditions see what happened.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.segments.rules import MAX_WINDOW_COUNT, dependents, parse_rule, referenced_segments, refresh_order
from store.segments.definitions import rule_references
from store.segments.models import Segment
from store.segments.scoring import refresh_scores
from store.segments.sql import compile_rule
from store.segments.transitions import EMIT, emit_params, lock_membership

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
WHERE (r.total, r.d1, r.d2, r.d3, r.more)
      IS DISTINCT FROM (excluded.total, excluded.d1, excluded.d2, excluded.d3, excluded.more)
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


async def refresh_segment(session: AsyncSession, segment: Segment, now: datetime,
                          touched: Sequence[int] | None = None) -> Changes:
    """Bring a rule segment's membership up to date: all contacts, or only `touched` ones."""
    if segment.kind != "rule":
        return Changes(0, 0)
    await lock_membership(session, segment.id)
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
    params = compiled.params | emit_params(segment.id, current.name, now)
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


async def refresh_scheduled(session: AsyncSession, now: datetime, *, time_based_only: bool) -> dict[int, Changes]:
    """The scheduled pass: scores first (they decay with time and rules may read them), rollup and score rows
    of contacts gone since dropped, then the rule segments (only time-based ones and what names them, or all)."""
    await refresh_scores(session, now)
    await drop_orphans(session)
    return await refresh_all(session, now, time_based_only=time_based_only)


async def refresh_contacts(session: AsyncSession, contact_ids: Sequence[int], now: datetime) -> dict[int, Changes]:
    """Re-evaluate these contacts (their events or traits changed): rollup, scores, then every rule segment."""
    touched = sorted(contact_ids)
    await refresh_rollup(session, touched)
    await refresh_scores(session, now, touched=touched)
    return await refresh_all(session, now, touched=touched)
