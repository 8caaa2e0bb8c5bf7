"""The tasks' step of a right-to-erasure (`store.erasure`): progress and per-contact task state go; reward grants
stay as the books' explanation of their postings (ids, amounts and references, no personal data), and a reward
not yet issued is cancelled with its budget released."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What erasure does to each tasks table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "task_progress": "deleted",
    "task_participants": "deleted (variant, lifetime completions, streak)",
    "task_grants": "kept for reconciliation with the ledger; grants not yet issued (claimable, pending, held) fail "
                   "('contact erased') and give their budget back",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int], *, now: datetime) -> dict[str, int]:
    ids = list(contact_ids)
    cancelled = await session.execute(text("""
        WITH f AS (
            UPDATE task_grants SET status = 'failed', failure = 'contact erased', updated_at = :now
            WHERE contact_id = ANY(:ids) AND status IN ('claimable', 'pending', 'held')
            RETURNING task_id, amount
        ), t AS (SELECT task_id, sum(amount) AS amount, count(*) AS n FROM f GROUP BY task_id),
        u AS (
            UPDATE tasks SET reserved = tasks.reserved - t.amount FROM t
            WHERE tasks.id = t.task_id AND tasks.budget IS NOT NULL
        )
        SELECT coalesce(sum(n), 0) FROM t
    """), {"ids": ids, "now": now})
    progress = await session.execute(text("DELETE FROM task_progress WHERE contact_id = ANY(:ids)"), {"ids": ids})
    who = await session.execute(text("DELETE FROM task_participants WHERE contact_id = ANY(:ids)"), {"ids": ids})
    return {"task_progress": int(progress.rowcount or 0),  # type: ignore[attr-defined]
            "task_participants": int(who.rowcount or 0),  # type: ignore[attr-defined]
            "task_grants_cancelled": int(cancelled.scalar() or 0)}
