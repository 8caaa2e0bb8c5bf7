"""Redemption activities: post to the ledger, reserve and release reward stock, issue and take back a coupon
reward's coupons (store/promotions/purchases.py), record order status.

Every activity is idempotent by its business key (posting references, the order id), so Temporal may retry
any of them freely. Refusals (DomainError) become non-retryable ApplicationErrors in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from domain.errors import DomainError
from domain.ledger.postings import HoldNotPending, Kind, Request
from store.db import transaction
from store.ledger import redemptions
from store.ledger.accounts import post
from store.promotions import purchases


@dataclass
class OrderStep:
    order_id: str
    program_id: int
    contact_id: int
    reward_id: int
    quantity: int
    points: int
    hold_seconds: int = 900
    fail: str = ""  # fault injection for drills and tests: "fail" (for good) or "retry" (keeps failing)


@dataclass
class OrderStatus:
    order_id: str
    status: str
    failure: str | None = None


def hold_reference(order_id: str) -> str:
    return f"redeem:{order_id}:hold"


class RedemptionActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    @asynccontextmanager
    async def _tx(self, step: OrderStep) -> AsyncIterator[AsyncSession]:
        if step.fail:
            raise ApplicationError(f"injected failure in {activity.info().activity_type}",
                                   non_retryable=step.fail == "fail", type="InjectedFailure")
        try:
            async with transaction(self.sessions) as session:
                yield session
        except DomainError as exc:
            raise ApplicationError(str(exc), non_retryable=True, type=type(exc).__name__) from exc

    async def _post(self, session: AsyncSession, step: OrderStep, request: Request) -> None:
        await post(session, step.program_id, request, now=datetime.now(UTC))

    @activity.defn
    async def hold_points(self, step: OrderStep) -> None:
        async with self._tx(step) as session:
            await self._post(session, step, Request(hold_reference(step.order_id), Kind.HOLD, step.contact_id,
                                                    step.points, hold_seconds=step.hold_seconds))

    @activity.defn
    async def reserve_stock(self, step: OrderStep) -> None:
        async with self._tx(step) as session:
            await redemptions.reserve(session, step.order_id, step.reward_id, step.quantity)

    @activity.defn
    async def issue_coupons(self, step: OrderStep) -> None:
        """A coupon reward's coupons, once per unit by `redeem:{order_id}#{i}`, kept on the order; a refusal (no
        coupons left, the template archived, the contact's limit) issues none."""
        async with self._tx(step) as session:
            await purchases.issue_for_order(session, step.order_id, now=datetime.now(UTC))

    @activity.defn
    async def fulfil(self, step: OrderStep) -> None:
        async with self._tx(step) as session:
            await redemptions.fulfil(session, step.order_id)

    @activity.defn
    async def commit_hold(self, step: OrderStep) -> None:
        async with self._tx(step) as session:
            await self._post(session, step, Request(f"redeem:{step.order_id}:commit", Kind.COMMIT, step.contact_id,
                                                    hold_reference=hold_reference(step.order_id)))

    @activity.defn
    async def void_hold(self, step: OrderStep) -> None:
        """Compensation: give the held points back. A hold that never happened or is already voided is fine."""
        try:
            async with transaction(self.sessions) as session:
                await self._post(session, step, Request(f"redeem:{step.order_id}:void", Kind.VOID, step.contact_id,
                                                        hold_reference=hold_reference(step.order_id)))
        except HoldNotPending:
            return

    @activity.defn
    async def release_stock(self, step: OrderStep) -> None:
        """Compensation: give reserved stock back, once."""
        async with transaction(self.sessions) as session:
            await redemptions.release(session, step.order_id)

    @activity.defn
    async def revoke_coupons(self, step: OrderStep) -> list[str]:
        """Compensation: revoke the coupons issued and give them back to the template's stock, once. Returns the
        codes of coupons already redeemed, which cannot be taken back."""
        async with transaction(self.sessions) as session:
            return await purchases.take_back_for_order(session, step.order_id)

    @activity.defn
    async def record_status(self, status: OrderStatus) -> None:
        async with transaction(self.sessions) as session:
            await redemptions.set_status(session, status.order_id, status.status, status.failure)
