"""Task progress follows an identity merge: an anonymous visitor's check-ins count for the contact they turn out to
be. The tasks' step of a contact merge (`store.merges`), in the merge's transaction, before the merged-away row
goes; one indexed probe per pair when the merged-away contact has no task state, which is nearly always.

Where both contacts have a row for the same (task, period), the survivor's is kept and the merged-away one is
dropped: adding them up could complete a period twice, and a reward earned twice is worse than one missed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What a merge does to each tasks table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "task_progress": "moved to the survivor unless it has its own row for the same task and period (kept)",
    "task_participants": "moved to the survivor unless it already takes part in the task (kept)",
    "task_grants": "stay under the merged-away id with their references (what the ledger posted); one not yet "
                   "issued fails at posting (the contact is gone) and gives its budget back",
}


async def move(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    params = {"f": [p[0] for p in pairs], "i": [p[1] for p in pairs]}
    for table, key in (("task_progress", "task_id, period_key"), ("task_participants", "task_id")):
        await session.execute(text(f"""
            WITH gone AS (
                DELETE FROM {table} t USING unnest(CAST(:f AS bigint[]), CAST(:i AS bigint[])) AS k(f, i)
                WHERE t.contact_id = k.f RETURNING t.*, k.i AS into_id
            )
            INSERT INTO {table} SELECT (jsonb_populate_record(NULL::{table},
                to_jsonb(gone) - 'into_id' || jsonb_build_object('contact_id', gone.into_id))).* FROM gone
            ON CONFLICT (contact_id, {key}) DO NOTHING
        """), params)
