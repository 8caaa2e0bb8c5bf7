"""Recurring campaigns and their runs: the launch that hands a campaign to its Temporal Schedule, the run each
occurrence opens (numbered once, whatever the retries), and the runs' history with their counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import ApprovalPolicy, CampaignStatus, launch_target
from domain.campaigns_timing import Recurrence
from store.campaigns import lifecycle
from store.campaigns.definitions import get_campaign
from store.campaigns.lifecycle import Actor
from store.campaigns.models import Campaign, CampaignRun
from store.campaigns.runs import RunCounts, row_counts


def schedule_id(campaign_id: int) -> str:
    """The Temporal Schedule of a recurring campaign (one per campaign)."""
    return f"campaign-schedule:{campaign_id}"


def occurrence_workflow_id(campaign_id: int) -> str:
    """The schedule's workflow id prefix; Temporal appends each occurrence's time, so every occurrence's workflow id
    is its own and stays the same across the retries of its first activity."""
    return f"campaign:{campaign_id}:recurring"


async def start_recurring(session: AsyncSession, campaign_id: int, recurrence: Recurrence | None, *,
                          at: datetime | None = None, policy: ApprovalPolicy | None = None,
                          actor: Actor | None = None) -> tuple[Campaign, Recurrence] | None:
    """A launch of a campaign that recurs (`recurrence` given for this launch, else the one stored at create): moved
    to scheduled under the same approval check as any launch, with its recurrence (starting `at`, when given) stored
    and returned; the caller creates the schedule. None, with nothing changed, when the campaign does not recur."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    chosen = recurrence or (Recurrence.from_json(campaign.recurrence) if campaign.recurrence else None)
    if chosen is None:
        return None
    chosen = replace(chosen, start=at or chosen.start).check()
    reasons = await lifecycle.reasons_for_approval(session, campaign, policy or ApprovalPolicy(incentive=False))
    target = launch_target(CampaignStatus(campaign.status), reasons, later=True)
    campaign.recurrence = chosen.to_json()
    await lifecycle.record(session, campaign, target, actor or Actor.system(), f"recurring: {chosen.describe()}")
    return campaign, chosen


async def open_occurrence(session: AsyncSession, campaign_id: int, workflow_id: str,
                          scheduled_at: datetime | None) -> CampaignRun | None:
    """The run of the occurrence whose workflow is `workflow_id`: numbered max + 1 the first time, the same run on
    every retry. The campaign moves scheduled → running (audited as the run). None, and no run, when the campaign
    is not waiting for an occurrence (paused, cancelled, completed, or a previous occurrence still running): that
    occurrence is skipped."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    existing = await session.scalar(select(CampaignRun).where(CampaignRun.workflow_id == workflow_id))
    if existing is not None:
        return existing
    if campaign.status != CampaignStatus.SCHEDULED or campaign.recurrence is None:
        return None
    number = (await session.scalar(
        select(func.coalesce(func.max(CampaignRun.number), 0)).where(CampaignRun.campaign_id == campaign_id)
    )) + 1
    await session.execute(insert(CampaignRun).values(
        campaign_id=campaign_id, number=number, workflow_id=workflow_id, scheduled_at=scheduled_at,
    ).on_conflict_do_nothing(index_elements=["workflow_id"]))
    run = await session.scalar(select(CampaignRun).where(CampaignRun.workflow_id == workflow_id))
    assert run is not None
    note = f"occurrence of {scheduled_at.isoformat()}" if scheduled_at else "occurrence"
    await lifecycle.record(session, campaign, CampaignStatus.RUNNING, Actor.system(f"run {run.number}"), note)
    return run


async def run_history(session: AsyncSession, campaign_id: int,
                      limit: int = 50) -> list[tuple[CampaignRun, RunCounts]]:
    """The campaign's runs, latest first, each with its deliveries counted by status (one statement)."""
    rows = await session.execute(text("""
        SELECT r.id, count(d.key) AS total, count(*) FILTER (WHERE d.status = 'queued') AS queued,
               count(*) FILTER (WHERE d.status = 'sent') AS sent, count(*) FILTER (WHERE d.status = 'failed') AS failed,
               count(*) FILTER (WHERE d.status = 'suppressed') AS suppressed,
               count(*) FILTER (WHERE d.status = 'holdout') AS holdout,
               count(*) FILTER (WHERE d.status = 'cancelled') AS cancelled,
               count(*) FILTER (WHERE d.status = 'deferred') AS deferred
        FROM campaign_runs r LEFT JOIN deliveries d ON d.run_id = r.id
        WHERE r.campaign_id = :c GROUP BY r.id ORDER BY r.number DESC LIMIT :n
    """), {"c": campaign_id, "n": limit})
    counted = {r.id: row_counts(r) for r in rows}
    found: Sequence[CampaignRun] = (await session.scalars(
        select(CampaignRun).where(CampaignRun.id.in_(list(counted))).order_by(CampaignRun.number.desc()))).all()
    return [(run, counted[run.id]) for run in found]
