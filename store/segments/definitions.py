"""Segment definitions: create, get and list segments, and validate a rule (the segments it names exist and
form no cycle). Editing and deleting, which move membership, are in `store.segments.edits`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from domain.segments.rules import InvalidRule, Node, check_no_cycle, is_time_based, parse_rule, referenced_segments
from store.segments.models import Segment


async def rule_references(session: AsyncSession) -> dict[int, set[int]]:
    """Every rule segment and the segments its rule names."""
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
