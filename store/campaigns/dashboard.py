"""The campaigns dashboard: each campaign with its latest run's funnel; one campaign's page."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import HOLDOUT, lift
from domain.campaigns_timing import Recurrence
from store.campaigns.definitions import get_campaign
from store.campaigns.lifecycle import transitions
from store.campaigns.occurrences import run_history, schedule_id
from store.campaigns.runs import channel_counts, latest_run, run_counts, variant_results


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


async def campaign_detail(session: AsyncSession, campaign_id: int) -> dict[str, Any]:
    """One campaign for its dashboard page: the latest run's progress, per-variant results with the holdout's,
    per-channel states, every run with its counts (a recurring campaign's occurrences), its schedule and the audit
    trail. NotFound for an unknown id."""
    campaign = await get_campaign(session, campaign_id)
    run = await latest_run(session, campaign_id)
    recurrence = Recurrence.from_json(campaign.recurrence) if campaign.recurrence else None
    detail: dict[str, Any] = {"campaign": campaign, "run": run, "counts": None, "variants": {}, "channels": {},
                              "lift": None, "transitions": await transitions(session, campaign_id, limit=50),
                              "runs": await run_history(session, campaign_id),
                              "recurrence": recurrence.describe() if recurrence else None,
                              "schedule_id": schedule_id(campaign_id) if recurrence else None}
    if run is not None:
        detail["counts"] = await run_counts(session, run.id)
        variants = await variant_results(session, run.id, campaign.conversion_event)
        detail["variants"] = variants
        detail["channels"] = await channel_counts(session, run.id)
        held = variants.get(HOLDOUT)
        treated = [v for name, v in variants.items() if name != HOLDOUT]
        total = sum(v.counts.total for v in treated)
        if campaign.conversion_event and held and held.counts.total and total:
            detail["lift"] = lift(sum(v.converted for v in treated) / total, held.converted / held.counts.total)
    return detail
