"""The tasks dashboard's figures: per task, participants, completions, claim rate, rewards issued, budget burn and
a forecast of when the budget runs out. A fixed number of grouped statements, whatever the number of tasks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

MAX_TASKS = 100
BURN_WINDOW = timedelta(days=1)  # the forecast extrapolates the last day's reservations


@dataclass(frozen=True)
class TaskBoard:
    id: int
    name: str
    status: str
    alert: str | None
    participants: int
    completions: int
    claimable: int
    claimed: int
    lapsed: int
    issued: int          # rewards issued (count)
    issued_amount: int   # reward units issued
    pending: int         # earned, not issued yet (pending, issuing, held for review)
    failed: int
    budget: int | None
    reserved: int
    burn_per_day: int    # reward units reserved over the last day

    @property
    def claim_rate(self) -> float | None:
        """Claimed share of manual-claim rewards whose window is decided (claimed or lapsed)."""
        decided = self.claimed + self.lapsed
        return self.claimed / decided if decided else None

    @property
    def budget_used(self) -> float | None:
        return self.reserved / self.budget if self.budget else None

    @property
    def days_left(self) -> float | None:
        """At the last day's burn, days until the budget is spent; None without a budget or a burn."""
        if self.budget is None or self.burn_per_day <= 0:
            return None
        return max(0.0, (self.budget - self.reserved) / self.burn_per_day)

    def exhausted_at(self, now: datetime) -> datetime | None:
        return None if self.days_left is None else now + timedelta(days=self.days_left)


async def tasks_dashboard(session: AsyncSession, *, now: datetime) -> list[TaskBoard]:
    rows = await session.execute(text("""
        WITH t AS (SELECT id, name, status, alert, budget, reserved FROM tasks ORDER BY id DESC LIMIT :n),
        p AS (
            SELECT task_id, count(DISTINCT contact_id) AS participants, sum(completions) AS completions
            FROM task_progress WHERE task_id IN (SELECT id FROM t) GROUP BY task_id
        ), g AS (
            SELECT task_id,
                count(*) FILTER (WHERE status = 'claimable') AS claimable,
                count(*) FILTER (WHERE claim_deadline IS NOT NULL AND status NOT IN ('claimable', 'lapsed')) AS claimed,
                count(*) FILTER (WHERE status = 'lapsed') AS lapsed,
                count(*) FILTER (WHERE status = 'issued') AS issued,
                coalesce(sum(amount) FILTER (WHERE status = 'issued'), 0) AS issued_amount,
                count(*) FILTER (WHERE status IN ('pending', 'issuing', 'held')) AS pending,
                count(*) FILTER (WHERE status = 'failed') AS failed,
                coalesce(sum(amount) FILTER (WHERE created_at >= :since AND status NOT IN ('failed', 'lapsed')), 0)
                    AS burn
            FROM task_grants WHERE task_id IN (SELECT id FROM t) GROUP BY task_id
        )
        SELECT t.*, coalesce(p.participants, 0) AS participants, coalesce(p.completions, 0) AS completions,
               coalesce(g.claimable, 0) AS claimable, coalesce(g.claimed, 0) AS claimed,
               coalesce(g.lapsed, 0) AS lapsed, coalesce(g.issued, 0) AS issued,
               coalesce(g.issued_amount, 0) AS issued_amount, coalesce(g.pending, 0) AS pending,
               coalesce(g.failed, 0) AS failed, coalesce(g.burn, 0) AS burn
        FROM t LEFT JOIN p ON p.task_id = t.id LEFT JOIN g ON g.task_id = t.id ORDER BY t.id DESC
    """), {"n": MAX_TASKS, "since": now - BURN_WINDOW})
    return [TaskBoard(r.id, r.name, r.status, r.alert, int(r.participants), int(r.completions), int(r.claimable),
                      int(r.claimed), int(r.lapsed), int(r.issued), int(r.issued_amount), int(r.pending),
                      int(r.failed), r.budget, int(r.reserved), int(r.burn)) for r in rows]
