"""Previewing a rule: how many contacts it matches and a sample of them, without saving a segment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.segments.definitions import validate_rule
from store.segments.index import SegmentIndex


@dataclass(frozen=True)
class SampleContact:
    id: int
    user_id: str | None
    email: str | None
    traits: dict[str, Any]


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[SampleContact]
    backend: str  # the index that answered


async def preview_rule(session: AsyncSession, index: SegmentIndex, rule: Any, *, now: datetime,
                       sample: int) -> Preview:
    """Validate `rule` as a segment's would be, count its contacts on `index` and sample the first `sample`."""
    node = await validate_rule(session, rule)
    count = await index.count(session, node, now)
    ids = await index.page(session, node, now, after=0, limit=sample) if sample else []
    rows = await session.execute(
        text("SELECT id, user_id, email, traits FROM contacts WHERE id = ANY(:ids) ORDER BY id"), {"ids": ids})
    return Preview(count, [SampleContact(r.id, r.user_id, r.email, r.traits) for r in rows], index.name)
