"""Contacts whose traits changed, for the incremental segment consumer: read after a watermark kept in
`segment_cursors` (by `updated_at`), a little behind now so a transaction still in flight is not skipped."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Where a consumer without a watermark starts.
FIRST_LOOK_BACK = timedelta(minutes=5)


@dataclass(frozen=True)
class TraitChanges:
    contacts: set[int]
    watermark: str | None  # to save once they are handled (`save_watermark`); None: nothing to save
    more: bool  # a full page: more changes may be waiting


async def changed_contacts(session: AsyncSession, consumer: str, *, limit: int, settle: timedelta) -> TraitChanges:
    """Up to `limit` contacts updated after `consumer`'s watermark and at least `settle` ago, oldest first."""
    position = await session.scalar(text("SELECT position FROM segment_cursors WHERE consumer = :c"),
                                    {"c": consumer})
    since = datetime.fromisoformat(position) if position else datetime.now(UTC) - FIRST_LOOK_BACK
    rows = (await session.execute(text("""
        SELECT id, updated_at FROM contacts
        WHERE updated_at > :since AND updated_at <= statement_timestamp() - CAST(:settle AS interval)
        ORDER BY updated_at LIMIT :limit
    """), {"since": since, "settle": f"{settle.total_seconds()} seconds", "limit": limit})).all()
    if not rows:
        return TraitChanges(set(), since.isoformat() if position is None else None, False)
    return TraitChanges({r.id for r in rows}, rows[-1].updated_at.isoformat(), len(rows) >= limit)


async def save_watermark(session: AsyncSession, consumer: str, position: str) -> None:
    """Record that `consumer` has handled every trait change up to `position`."""
    await session.execute(text("""
        INSERT INTO segment_cursors (consumer, position) VALUES (:c, :p)
        ON CONFLICT (consumer) DO UPDATE SET position = excluded.position, updated_at = now()
    """), {"c": consumer, "p": position})
