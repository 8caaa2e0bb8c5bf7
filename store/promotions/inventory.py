"""The promotions' subjects on the shared inventory (store/inventory/stock.py): `promotion:{id}` (orders that may
use a promotion), `budget:{id}` (cents of discount) and `template:{id}` (coupons issued), and the leak sweep for
them. Reservations past `expires_at` are released by `release_expired` (the order workflow releases its own on
timeout; the sweep catches anything a crash left behind), so nothing leaks.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.inventory.stock import OutOfStock, Stock, commit, give_back, levels, release, reserve, set_total

__all__ = ["OutOfStock", "Stock", "budget_subject", "commit", "give_back", "levels", "promotion_subject", "release",
           "release_expired", "reserve", "set_total", "template_subject"]


def promotion_subject(promotion_id: int) -> str:
    return f"promotion:{promotion_id}"


def budget_subject(promotion_id: int) -> str:
    return f"budget:{promotion_id}"


def template_subject(template_id: int) -> str:
    return f"template:{template_id}"


async def release_expired(session: AsyncSession, now: datetime, limit: int = 1000) -> int:
    """Release reservations past their expiry whose holder is not a confirmed order (the leak sweep). The ledger's
    rewards are left to the redemption saga, which always settles its own."""
    holders = (await session.scalars(text("""
        SELECT DISTINCT r.holder FROM promotion_reservations r
        WHERE r.status = 'reserved' AND r.expires_at <= :now
          AND r.subject NOT LIKE 'reward:%'
          AND NOT EXISTS (SELECT 1 FROM promotion_orders o WHERE o.order_id = r.holder AND o.status = 'confirmed')
        LIMIT :limit
    """), {"now": now, "limit": limit})).all()
    return sum([await release(session, h) for h in holders])
