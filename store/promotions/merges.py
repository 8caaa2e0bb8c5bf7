"""What a contact merge (`store.merges`) does to promotions: the merged-away contact's coupons and usage follow it
to the survivor (so they stay spendable, and per-customer limits count both identities); orders stay with the id
that placed them. One indexed probe per table when the merged-away contacts have none, which is nearly always."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# What a merge does to each promotions table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "coupons": "moved to the survivor, in whatever state they are",
    "promotion_usage": "moved to the survivor, so a once-per-customer promotion is not used twice by one person",
    "promotion_orders": "stay under the id that placed them (a pending one still confirms or expires as it would)",
}


async def move(session: AsyncSession, pairs: Sequence[tuple[int, int]]) -> None:
    keys = {"f": [p[0] for p in pairs], "i": [p[1] for p in pairs]}
    await session.execute(text("""
        UPDATE coupons c SET contact_id = m.i, updated_at = now()
        FROM unnest(CAST(:f AS bigint[]), CAST(:i AS bigint[])) AS m(f, i) WHERE c.contact_id = m.f
    """), keys)
    await session.execute(text("""
        WITH gone AS (
            DELETE FROM promotion_usage u USING unnest(CAST(:f AS bigint[]), CAST(:i AS bigint[])) AS m(f, i)
            WHERE u.contact_id = m.f RETURNING m.i, u.promotion_id, u.order_id, u.discount, u.used_at
        )
        INSERT INTO promotion_usage (contact_id, promotion_id, order_id, discount, used_at)
        SELECT * FROM gone ON CONFLICT DO NOTHING
    """), keys)
