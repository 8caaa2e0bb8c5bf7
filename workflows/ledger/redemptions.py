"""RedemptionWorkflow: one per order (`redeem:{order_id}`), a saga over the ledger and the rewards stock.

hold points → reserve stock → (a coupon reward: issue its coupons) → fulfil → commit the hold. Any failure, or a
cancellation, runs the compensations registered so far in reverse (revoke the coupons, release stock, void the
hold); they are idempotent and retried until they succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.ledger.redemptions import OrderStatus, OrderStep, RedemptionActivities

TASK_QUEUE = "nudge-ledger"
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                         maximum_attempts=5)
FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
# A saga step or compensation: an activity method; its name is the activity's name (and what `fail_at` names).
# Steps answer None; the coupons' compensation answers the codes it could not take back.
Step = Callable[[RedemptionActivities, OrderStep], Awaitable[list[str] | None]]


def workflow_id(order_id: str) -> str:
    return f"redeem:{order_id}"


@dataclass
class RedemptionInput:
    order_id: str
    program_id: int
    contact_id: int
    reward_id: int
    quantity: int
    points: int
    hold_seconds: int = 900
    coupon_template_id: int | None = None  # a coupon reward: the template its coupons are issued from
    # Fault injection for drills and tests: "fulfil" fails that step for good, "fulfil:retry" keeps it failing.
    fail_at: list[str] = field(default_factory=list)


@workflow.defn
class RedemptionWorkflow:
    @workflow.init
    def __init__(self, params: RedemptionInput) -> None:
        self.params = params
        self.status = "pending"
        self.failure: str | None = None

    def _step(self, name: str) -> OrderStep:
        p = self.params
        return OrderStep(order_id=p.order_id, program_id=p.program_id, contact_id=p.contact_id,
                         reward_id=p.reward_id, quantity=p.quantity, points=p.points, hold_seconds=p.hold_seconds,
                         fail="fail" if name in p.fail_at else "retry" if f"{name}:retry" in p.fail_at else "")

    async def _run(self, step: Step, retry: RetryPolicy = STEP_RETRY) -> list[str] | None:
        return await workflow.execute_activity_method(step, self._step(step.__name__),
                                                      start_to_close_timeout=timedelta(seconds=30), retry_policy=retry)

    async def _record(self, status: str) -> None:
        self.status = status
        await workflow.execute_activity_method(
            RedemptionActivities.record_status, OrderStatus(self.params.order_id, status, self.failure),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=FOREVER)

    @workflow.run
    async def run(self, params: RedemptionInput) -> str:
        compensations: list[Step] = []
        try:
            # Each compensation is registered before its step: a step that timed out may still have happened.
            compensations.append(RedemptionActivities.void_hold)
            await self._run(RedemptionActivities.hold_points)
            compensations.append(RedemptionActivities.release_stock)
            await self._run(RedemptionActivities.reserve_stock)
            if params.coupon_template_id is not None:
                compensations.append(RedemptionActivities.revoke_coupons)
                await self._run(RedemptionActivities.issue_coupons)
            await self._run(RedemptionActivities.fulfil)
            await self._run(RedemptionActivities.commit_hold)
        except (ActivityError, asyncio.CancelledError) as exc:
            cancelled = is_cancelled_exception(exc)
            cause = exc.cause if isinstance(exc, ActivityError) else None
            self.failure = "cancelled" if cancelled else (
                cause.message if isinstance(cause, ApplicationError) else str(exc))
            for compensation in reversed(compensations):
                kept = await self._run(compensation, FOREVER)
                if kept:  # used before the compensation: the contact keeps it, the order says so for a person
                    self.failure += f"; coupon(s) {', '.join(kept)} already redeemed: not taken back"
            await self._record("cancelled" if cancelled else "failed")
            if cancelled:
                raise
            return self.status
        await self._record("completed")
        return self.status

    @workflow.query
    def current_status(self) -> str:
        return self.status
