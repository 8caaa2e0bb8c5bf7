"""Order activities: let go of an order that did not complete (expiry or cancel). Idempotent by the order's guarded
status change (store/promotions/orders.py): a confirmed order is left alone, a released one is not released twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.errors import DomainError
from store.db import transaction
from store.promotions import coupons, inventory, orders


@dataclass
class OrderRef:
    order_id: str
    why: str = "expired"  # or "cancelled"


class OrderActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @activity.defn
    async def release_order(self, ref: OrderRef) -> str:
        """Release a still-pending order's coupons, stock, budget and points hold; the order's final status."""
        try:
            async with transaction(self.sessions) as session:
                order = await orders.release(session, ref.order_id, now=datetime.now(UTC), why=ref.why)
                return order.status
        except DomainError as exc:
            raise ApplicationError(str(exc), non_retryable=True, type=type(exc).__name__) from exc

    @activity.defn
    async def sweep_reservations(self) -> int:
        """Release reservations past their expiry whose holder vanished (a crash before its order workflow
        started, a workflow terminated by hand); units returned."""
        async with transaction(self.sessions) as session:
            return await inventory.release_expired(session, datetime.now(UTC))

    @activity.defn
    async def expire_coupons(self) -> int:
        """Issued coupons past their validity become expired; how many."""
        async with transaction(self.sessions) as session:
            return await coupons.expire_due(session, datetime.now(UTC))
