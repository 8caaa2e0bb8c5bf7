"""OrderWorkflow: one per order (`order:{order_id}`), seed 004's soft transaction bound to an order id.

The order's reservations (coupons, stock, budget, points hold) are taken in the transaction that places it; this
workflow holds them for `hold_seconds`. Confirm and cancel change the order in the API's transaction and then
signal `settled`; either way — signal, timeout or cancellation of the workflow — it ends by releasing the order,
which is a no-op for one already confirmed or released (a guarded status change), and releases one whose confirm
never committed. The release is retried until it succeeds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.promotions.orders import OrderActivities, OrderRef

TASK_QUEUE = "nudge-promotions"
FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))


def workflow_id(order_id: str) -> str:
    return f"order:{order_id}"


@dataclass
class OrderInput:
    order_id: str
    hold_seconds: int = 900


@workflow.defn
class OrderWorkflow:
    @workflow.init
    def __init__(self, params: OrderInput) -> None:
        self.params = params
        self.outcome: str | None = None

    @workflow.signal
    def settled(self, outcome: str) -> None:
        """The API confirmed or cancelled the order."""
        self.outcome = outcome

    async def _release(self, why: str) -> str:
        return await workflow.execute_activity_method(
            OrderActivities.release_order, OrderRef(self.params.order_id, why),
            start_to_close_timeout=timedelta(seconds=30), retry_policy=FOREVER)

    @workflow.run
    async def run(self, params: OrderInput) -> str:
        try:
            await workflow.wait_condition(lambda: self.outcome is not None,
                                          timeout=timedelta(seconds=params.hold_seconds))
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            await self._release("cancelled")  # the compensation runs even though the workflow is cancelled
            raise
        return await self._release("expired")

    @workflow.query
    def current_outcome(self) -> str | None:
        return self.outcome
