"""The journeys' step of a right-to-erasure (`store.erasure`): where the person is in every journey and how they got
there go; the per-node counts (no contact id) stay."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What erasure does to each journeys table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "journey_states": "deleted: the contact leaves every journey (nothing more is sent)",
    "journey_history": "deleted",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int]) -> dict[str, int]:
    removed = {}
    for table in TABLES:
        result = await session.execute(text(f"DELETE FROM {table} WHERE contact_id = ANY(:ids)"),
                                        {"ids": list(contact_ids)})
        removed[table] = int(result.rowcount or 0)  # type: ignore[attr-defined]
    return removed
