"""RewardIssuanceWorkflow: one per batch of reward grants (id `reward-issuance:{first}-{last}`, from the batch's
grant ids, never a run id), a saga over the budget, the ledger and external benefits.

begin (pending → issuing) → post the credits of points grants (one call to the ledger's posting service, each
under its grant's reference `reward:{task}:{contact}:{period}:{n}`) → issue external benefits (coupon grants:
their coupons, under `{reference}#{i}`) → notify (a toast per credited grant, or the task's channel chain; a
failure here is logged, never compensated) → issued. The budget was reserved when the rewards were earned
(atomically, in the progress transaction); a failure or a cancellation runs the compensations registered so far
in reverse — reverse the postings (`{reference}:reverse`) and revoke the coupons, then release the budget —
idempotent and retried until they succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey, SearchAttributePair
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

with workflow.unsafe.imports_passed_through():
    from activities.tasks.rewards import IssuanceStep, RewardActivities

TASK_QUEUE = "nudge-tasks"
TASK_ID = SearchAttributeKey.for_keyword("TaskId")
STEP_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30),
                         maximum_attempts=5)
FOREVER = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=5))
Step = Callable[[RewardActivities, IssuanceStep], Awaitable[Any]]


def task_attribute(task_id: int) -> SearchAttributePair[str]:
    return SearchAttributePair(TASK_ID, str(task_id))


@dataclass
class IssuanceInput:
    batch: str  # the workflow id: `reward-issuance:{first}-{last}`
    size: int = 0
    # Fault injection for drills and tests: "post_rewards" fails that step for good, "post_rewards:retry" keeps
    # it failing (until the workflow is cancelled).
    fail_at: list[str] = field(default_factory=list)


@workflow.defn
class RewardIssuanceWorkflow:
    @workflow.init
    def __init__(self, params: IssuanceInput) -> None:
        self.params = params
        self.status = "issuing"
        self.failure: str | None = None
        self.notice_failure: str | None = None

    def _step(self, name: str) -> IssuanceStep:
        p = self.params
        return IssuanceStep(p.batch, fail="fail" if name in p.fail_at else "retry" if f"{name}:retry" in p.fail_at
                            else "", reason=self.failure or "")

    async def _run(self, step: Step, retry: RetryPolicy = STEP_RETRY) -> Any:
        return await workflow.execute_activity_method(step, self._step(step.__name__),
                                                      start_to_close_timeout=timedelta(minutes=2),
                                                      retry_policy=retry)

    @workflow.run
    async def run(self, params: IssuanceInput) -> str:
        compensations: list[Step] = []
        try:
            # Registered before their steps: a step that timed out may still have happened.
            compensations.append(RewardActivities.release_budget)
            await self._run(RewardActivities.begin_issuance)
            compensations.append(RewardActivities.reverse_postings)
            await self._run(RewardActivities.post_rewards)
            await self._run(RewardActivities.issue_benefits)
            await self._notify()
            await self._run(RewardActivities.finish_issuance)
        except (ActivityError, asyncio.CancelledError) as exc:
            cancelled = is_cancelled_exception(exc)
            cause = exc.cause if isinstance(exc, ActivityError) else None
            self.failure = "cancelled" if cancelled else (
                cause.message if isinstance(cause, ApplicationError) else str(exc))
            for compensation in reversed(compensations):
                await self._run(compensation, FOREVER)
            self.status = "cancelled" if cancelled else "compensated"
            if cancelled:
                raise
            return self.status
        self.status = "issued"
        return self.status

    async def _notify(self) -> None:
        """Telling the contacts is not worth taking the money back: a notice that keeps failing is logged and the
        batch is issued all the same (the task centre shows the rewards; the inbox keys make a re-run safe)."""
        try:
            await self._run(RewardActivities.notify_rewarded)
        except ActivityError as exc:
            if is_cancelled_exception(exc):
                raise
            self.notice_failure = str(exc.cause or exc)
            workflow.logger.warning("reward notices of %s not sent: %s", self.params.batch, self.notice_failure)

    @workflow.query
    def current_status(self) -> str:
        return self.status
