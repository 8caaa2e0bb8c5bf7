"""Deliveries a batch settled `deferred` (quiet hours, a receipt window, a retry, a lease a stopped worker left),
settled again once the delivery service has moved their plans on: a campaign's counts follow the sweeper's later
sends. Run a batch at a time by the campaigns' housekeeping schedule (`workflows/campaigns_deferred.py`)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.campaigns.runs import settle_from_plans
from store.channels.records import SENT_OR_LATER


async def settle_deferred(session: AsyncSession, *, limit: int = 5000) -> int:
    """Settle up to `limit` deferred deliveries whose plan has moved on — a channel accepted the message, or the
    plan is done — from their plans (`runs.settle_from_plans`); the caller plans its transaction as key lookups
    (`records.by_key`). Deferred ones still waiting are left alone. Returns how many were settled."""
    pairs = [(r.contact_id, r.key) for r in await session.execute(text("""
        SELECT d.contact_id, d.key FROM deliveries d
        JOIN delivery_plans p ON p.contact_id = d.contact_id AND p.key = d.key
        WHERE d.status = 'deferred'
          AND (p.wake_at IS NULL OR EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.contact_id = d.contact_id
                                            AND a.key = d.key AND a.status = ANY(CAST(:sent AS text[]))))
        ORDER BY d.contact_id, d.key LIMIT :n
    """), {"n": limit, "sent": sorted(s.value for s in SENT_OR_LATER)})]
    await settle_from_plans(session, pairs)
    return len(pairs)
