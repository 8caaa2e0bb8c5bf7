"""The segments' step of a right-to-erasure (`store.erasure`): the contact's rows go, so counts drop it at once."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What erasure does to each segments table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "segment_members": "deleted",
    "segment_transitions": "deleted",
    "contact_scores": "deleted (computed traits)",
    "contact_event_recent": "deleted (the segments' rollup of the contact's events)",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> dict[str, int]:
    """Delete the rows of the erased contact and of the contacts merged into it; rows deleted per table."""
    removed = {}
    for table in TABLES:  # a fixed set of names, never input
        result = await session.execute(text(f"DELETE FROM {table} WHERE contact_id = ANY(:ids)"),
                                       {"ids": list(contact_ids)})
        removed[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed
