"""Reward issuance activities: the saga steps and compensations of one batch of grants (store/tasks/grants.py).

Every step moves the batch's grants by status and posts under the grants' references, so Temporal may retry any
of them after a crash: nothing is credited, reversed or released twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.tasks.notify import RewardNotifier
from domain.errors import DomainError
from store.db import transaction
from store.tasks import grants, notices


@dataclass
class IssuanceStep:
    batch: str
    fail: str = ""  # fault injection for drills and tests: "fail" (for good) or "retry" (keeps failing)
    reason: str = ""  # compensations: why the batch is being compensated


@dataclass
class Issued:
    grants: int = 0
    posted: int = 0
    held: int = 0
    failed: int = 0


class RewardActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], notifier: RewardNotifier | None = None) -> None:
        self.sessions = sessions
        self.notifier = notifier or RewardNotifier(sessions)

    @asynccontextmanager
    async def _tx(self, step: IssuanceStep) -> AsyncIterator[AsyncSession]:
        if step.fail:
            raise ApplicationError(f"injected failure in {activity.info().activity_type}",
                                   non_retryable=step.fail == "fail", type="InjectedFailure")
        try:
            async with transaction(self.sessions) as session:
                yield session
        except DomainError as exc:
            raise ApplicationError(str(exc), non_retryable=True, type=type(exc).__name__) from exc

    @activity.defn
    async def begin_issuance(self, step: IssuanceStep) -> Issued:
        async with self._tx(step) as session:
            return Issued(grants=len(await grants.begin(session, step.batch, datetime.now(UTC))))

    @activity.defn
    async def post_rewards(self, step: IssuanceStep) -> Issued:
        """Credit the batch's rewards in one call to the ledger's posting service (risk-screened)."""
        async with self._tx(step) as session:
            done = await grants.post_rewards(session, step.batch, now=datetime.now(UTC))
        return Issued(posted=done["posted"], held=done["held"], failed=done["failed"])

    @activity.defn
    async def issue_benefits(self, step: IssuanceStep) -> Issued:
        """External benefits of the batch's rewards. Points need none (the posting is the benefit); coupon grants
        get their coupons here, each under `{grant reference}#{i}` (a retry returns the same coupons)."""
        async with self._tx(step) as session:
            done = await grants.issue_coupons(session, step.batch, now=datetime.now(UTC))
        return Issued(posted=done["issued"], failed=done["failed"])

    @activity.defn
    async def notify_rewarded(self, step: IssuanceStep) -> int:
        """Tell the contacts about their credited rewards: a toast each in the in-app inbox, or the task's channel
        chain (activities/tasks/notify.py), keyed `notify:{reference}` so a retry tells nobody twice."""
        async with self._tx(step) as session:
            ids, told = await notices.credited_in_batch(session, step.batch)
        sent = await self.notifier.send(told)
        async with transaction(self.sessions) as session:
            await notices.mark_told(session, ids, now=datetime.now(UTC))
        return sent

    @activity.defn
    async def finish_issuance(self, step: IssuanceStep) -> int:
        async with self._tx(step) as session:
            return await grants.finish(session, step.batch, datetime.now(UTC))

    @activity.defn
    async def reverse_postings(self, step: IssuanceStep) -> int:
        """Compensation: take back what the batch gave — reverse its credits (references `{reference}:reverse`)
        and revoke its coupons (a redeemed one cannot be taken back: store/tasks/grants.py:revoke_coupons)."""
        async with transaction(self.sessions) as session:
            now = datetime.now(UTC)
            return (await grants.reverse_postings(session, step.batch, now=now)
                    + await grants.revoke_coupons(session, step.batch, now=now))

    @activity.defn
    async def release_budget(self, step: IssuanceStep) -> int:
        """Compensation: the batch's unissued grants fail and give their budget back."""
        async with transaction(self.sessions) as session:
            return await grants.release_budget(session, step.batch, step.reason or "issuance failed",
                                               now=datetime.now(UTC))
