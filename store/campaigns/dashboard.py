"""The campaigns dashboard: each campaign with its latest run's funnel."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def campaign_summaries(session: AsyncSession) -> list[dict[str, Any]]:
    """Per campaign: status and delivery counts, for the API list and the dashboard."""
    rows = await session.execute(text("""
        SELECT c.id, c.name, c.channel, c.status, c.created_at,
               coalesce(d.total, 0) AS total, coalesce(d.sent, 0) AS sent,
               coalesce(d.failed, 0) AS failed, coalesce(d.queued, 0) AS queued
        FROM campaigns c
        LEFT JOIN (
            SELECT campaign_id, count(*) AS total,
                   count(*) FILTER (WHERE status = 'sent') AS sent,
                   count(*) FILTER (WHERE status = 'failed') AS failed,
                   count(*) FILTER (WHERE status = 'queued') AS queued
            FROM deliveries GROUP BY campaign_id
        ) d ON d.campaign_id = c.id
        ORDER BY c.id DESC LIMIT 200
    """))
    return [dict(r._mapping) for r in rows]
