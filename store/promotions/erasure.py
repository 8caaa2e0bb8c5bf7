"""The promotions' step of a right-to-erasure (`store.erasure`): pending orders are cancelled (their coupons,
stock and points hold released), the contact's unused coupons are revoked; orders, coupons and usage rows stay
under the now-anonymous contact id (they hold no personal data, and budgets and usage counts stay right)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.promotions import orders

# What erasure does to each promotions table holding a contact id (tests/store/test_cascades.py reads this).
TABLES = {
    "promotion_orders": "a pending order is cancelled (coupons, stock, budget and points hold released); rows stay "
                        "under the anonymous id: amounts and the priced quote, no personal data",
    "coupons": "issued or reserved coupons are revoked; rows stay (codes and states, no personal data)",
    "promotion_usage": "kept: which promotion an order used and what it saved (budget and usage counts)",
}


async def erase(session: AsyncSession, contact_ids: Sequence[int], *, now: datetime) -> dict[str, int]:
    """Cancel pending orders, revoke unused coupons; rows changed per table."""
    pending = (await session.scalars(text("""
        SELECT order_id FROM promotion_orders WHERE contact_id = ANY(:ids) AND status = 'pending' ORDER BY order_id
    """), {"ids": list(contact_ids)})).all()
    for order_id in pending:
        await orders.release(session, order_id, now=now, why="cancelled")
    revoked = await session.execute(text("""
        UPDATE coupons SET state = 'revoked', updated_at = now()
        WHERE contact_id = ANY(:ids) AND state IN ('issued', 'reserved')
    """), {"ids": list(contact_ids)})
    return {"promotion_orders_cancelled": len(pending),
            "coupons_revoked": int(revoked.rowcount or 0)}  # type: ignore[attr-defined]
