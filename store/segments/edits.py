"""Creating, editing and deleting segments with their membership: a new segment's members are computed at
once; a changed rule re-materialises membership (and every segment built on it); a deleted segment's members
exit first, and a segment other rules name cannot be deleted.

Lock order, the same as a refresh's: the segment's advisory lock, then its row. So an edit, a delete and
a scheduled refresh of the same segment queue behind each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, DomainError, NotFound
from domain.segments.rules import InvalidRule, is_time_based
from store.segments.definitions import create_segment, rule_references, validate_rule
from store.segments.membership import add_members, exit_members
from store.segments.models import Segment
from store.segments.refresh import Changes, refresh_segment, refresh_with_dependents
from store.segments.transitions import lock_membership

EDITABLE = ("name", "description", "rule")


async def create_with_members(session: AsyncSession, *, name: str, kind: str, rule: Any | None,
                              description: str | None, contact_ids: Sequence[int], now: datetime) -> Segment:
    """Save a segment and compute its membership at once: a rule segment's matching contacts enter, a manual
    segment takes `contact_ids`."""
    segment = await create_segment(session, name=name, kind=kind, rule=rule, description=description)
    if segment.kind == "rule":
        await refresh_segment(session, segment, now)
    elif contact_ids:
        await add_members(session, segment, contact_ids, now)
    return segment


async def lock_segment(session: AsyncSession, segment_id: int) -> Segment:
    await lock_membership(session, segment_id)
    segment = await session.scalar(select(Segment).where(Segment.id == segment_id).with_for_update()
                                   .execution_options(populate_existing=True))
    if segment is None:
        raise NotFound(f"Segment {segment_id} does not exist.")
    return segment


async def update_segment(session: AsyncSession, segment_id: int, fields: Mapping[str, Any],
                         now: datetime) -> tuple[Segment, dict[int, Changes]]:
    """Apply `fields` (a subset of name, description, rule). A new rule is validated like a new segment's
    (422 naming the problem, nothing changed) and membership follows it at once, with exits and entries."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise DomainError(f"{sorted(unknown)[0]}: not editable; change name, description or rule")
    segment = await lock_segment(session, segment_id)
    if "name" in fields and not fields["name"]:
        raise DomainError("name: a segment needs a name")
    rule_changed = "rule" in fields and fields["rule"] != segment.rule
    if "rule" in fields and segment.kind != "rule":
        raise InvalidRule(f"rule: segment {segment_id} is a manual segment; change its members with "
                          f"/v1/segments/{segment_id}/members")
    if "rule" in fields and fields["rule"] is None:
        raise InvalidRule("rule: a rule segment needs a rule")
    if rule_changed:
        node = await validate_rule(session, fields["rule"], segment_id=segment_id)
        segment.rule = fields["rule"]
        segment.time_based = is_time_based(node)
    if "name" in fields:
        segment.name = fields["name"]
    if "description" in fields:
        segment.description = fields["description"]
    await session.flush()
    changes = await refresh_with_dependents(session, segment, now) if rule_changed else {}
    return segment, changes


async def delete_segment(session: AsyncSession, segment_id: int, now: datetime) -> int:
    """Delete a segment no other rule names; its current members exit (transitions and events) first.
    Returns how many exited. Its past transitions stay until pruned (they are history)."""
    segment = await lock_segment(session, segment_id)
    # Rules that name this segment lock it KEY SHARE while being saved, so this sees every committed one.
    referrers = sorted(sid for sid, named in (await rule_references(session)).items()
                       if segment_id in named and sid != segment_id)
    if referrers:
        names = dict((await session.execute(select(Segment.id, Segment.name).where(Segment.id.in_(referrers)))).all())
        listed = ", ".join(f"{sid} ({names.get(sid, '?')!r})" for sid in referrers)
        raise Conflict(f"Segment {segment_id} is used by the rule of segment(s) {listed}; "
                       f"change or delete those first.")
    exited = await exit_members(session, segment, None, now)
    await session.execute(text("DELETE FROM segment_members WHERE segment_id = :sid"), {"sid": segment_id})
    await session.execute(delete(Segment).where(Segment.id == segment_id))
    session.expunge(segment)
    return exited
