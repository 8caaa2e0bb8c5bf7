"""The deliveries dashboard: per channel sent → delivered → opened → clicked, failures by class, the share of steps
that went through a fallback, the suppression list by reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass
class DeliveryBoard:
    channels: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    fell_back: int = 0
    pending: int = 0
    suppressions: dict[str, int] = field(default_factory=dict)

    @property
    def fallback_share(self) -> float:
        return self.fell_back / self.steps if self.steps else 0.0


async def deliveries_dashboard(session: AsyncSession) -> DeliveryBoard:
    board = DeliveryBoard()
    # A state later in the funnel implies the earlier ones (the state machine only moves forward).
    rows = await session.execute(text("""
        SELECT channel,
               count(*) FILTER (WHERE status IN ('sent', 'delivered', 'opened', 'clicked', 'complained', 'bounced')
                                   OR sent_at IS NOT NULL) AS sent,
               count(*) FILTER (WHERE status IN ('delivered', 'opened', 'clicked', 'complained')) AS delivered,
               count(*) FILTER (WHERE status IN ('opened', 'clicked')) AS opened,
               count(*) FILTER (WHERE status = 'clicked') AS clicked,
               count(*) FILTER (WHERE status IN ('failed', 'bounced')) AS failed,
               count(*) FILTER (WHERE status = 'suppressed') AS suppressed
        FROM delivery_attempts GROUP BY channel ORDER BY channel
    """))
    board.channels = [dict(r._mapping) for r in rows]
    rows = await session.execute(text("""
        SELECT channel, coalesce(error_class, status) AS class, count(*) AS n FROM delivery_attempts
        WHERE status IN ('failed', 'bounced', 'suppressed') GROUP BY 1, 2 ORDER BY n DESC, 1, 2 LIMIT 50
    """))
    board.failures = [dict(r._mapping) for r in rows]
    steps = (await session.execute(text("""
        SELECT count(*) AS steps, count(*) FILTER (WHERE finished_at IS NULL) AS pending,
               count(*) FILTER (WHERE EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.contact_id = p.contact_id
                                               AND a.key = p.key AND a.attempt > 1)) AS fell_back
        FROM delivery_plans p
    """))).one()
    board.steps, board.pending, board.fell_back = steps.steps, steps.pending, steps.fell_back
    board.suppressions = {r.reason: r.n for r in await session.execute(text(
        "SELECT reason, count(*) AS n FROM suppressions GROUP BY reason ORDER BY reason"))}
    return board
