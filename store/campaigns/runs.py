"""Campaigns, their runs and deliveries. Recipient work is set-based: one statement per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, true, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import aliased

from domain.campaigns import CampaignStatus, transition
from domain.errors import Conflict, NotFound
from store.campaigns.definitions import get_campaign
from store.campaigns.models import Campaign, CampaignRun, Delivery

STEP = "s1"  # a broadcast has one send step; journeys name theirs


def workflow_id(campaign_id: int, number: int) -> str:
    return f"campaign:{campaign_id}:run:{number}"


async def start_run(session: AsyncSession, campaign_id: int) -> CampaignRun:
    """Move the campaign to running and record its next run (the caller starts the workflow)."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    status = CampaignStatus(campaign.status)
    if status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
        raise Conflict(f"Campaign {campaign_id} is already {status}; resume or wait for its current run instead.")
    campaign.status = transition(status, CampaignStatus.RUNNING).value
    number = (await session.scalar(
        select(func.coalesce(func.max(CampaignRun.number), 0)).where(CampaignRun.campaign_id == campaign_id)
    )) + 1
    run = CampaignRun(campaign_id=campaign_id, number=number, workflow_id=workflow_id(campaign_id, number))
    session.add(run)
    await session.flush()
    return run


async def latest_run(session: AsyncSession, campaign_id: int) -> CampaignRun | None:
    return await session.scalar(
        select(CampaignRun).where(CampaignRun.campaign_id == campaign_id).order_by(CampaignRun.number.desc()).limit(1)
    )


async def latest_runs(session: AsyncSession, campaign_ids: Sequence[int]) -> dict[int, tuple[CampaignRun, RunCounts]]:
    """Each campaign's latest run with its delivery counts, for many campaigns in one statement."""
    latest = (
        select(CampaignRun).where(CampaignRun.campaign_id.in_(campaign_ids))
        .ext(distinct_on(CampaignRun.campaign_id)).order_by(CampaignRun.campaign_id, CampaignRun.number.desc())
        .subquery()
    )
    run = aliased(CampaignRun, latest)
    counts = (
        select(
            func.count().label("total"),
            func.count().filter(Delivery.status == "queued").label("queued"),
            func.count().filter(Delivery.status == "sent").label("sent"),
            func.count().filter(Delivery.status == "failed").label("failed"),
        ).where(Delivery.run_id == run.id).lateral()
    )
    rows = await session.execute(select(run, counts).join(counts, true()))
    return {r[0].campaign_id: (r[0], RunCounts(r.total, r.queued, r.sent, r.failed)) for r in rows}


async def get_run(session: AsyncSession, run_id: int) -> CampaignRun:
    run = await session.get(CampaignRun, run_id)
    if run is None:
        raise NotFound(f"Campaign run {run_id} does not exist.")
    return run


async def snapshot_audience(session: AsyncSession, run_id: int) -> int:
    """Queue one delivery per audience member in one statement; re-running it adds nothing."""
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id)
    contact_ids = [int(c) for c in campaign.audience.get("contact_ids", [])]
    await session.execute(
        text("""
            INSERT INTO deliveries (contact_id, key, campaign_id, run_id, step, channel, status)
            SELECT c.id, 'delivery:' || :campaign || ':' || :step || ':' || c.id,
                   :campaign, :run, :step, :channel, 'queued'
            FROM contacts c WHERE c.id = ANY(:ids)
            ON CONFLICT (contact_id, key) DO NOTHING
        """),
        {"campaign": campaign.id, "step": STEP, "run": run_id, "channel": campaign.channel, "ids": contact_ids},
    )
    total = await session.scalar(
        text("SELECT count(*) FROM deliveries WHERE campaign_id = :c AND step = :s"), {"c": campaign.id, "s": STEP}
    )
    run.total = int(total or 0)
    run.status = "running"
    return run.total


@dataclass(frozen=True)
class PendingDelivery:
    key: str
    contact_id: int
    email: str | None
    contact: dict[str, Any]


async def queued_page(session: AsyncSession, run_id: int, after_contact_id: int, limit: int) -> list[PendingDelivery]:
    """The next page of deliveries not yet sent, keyed by contact id (stable across retries)."""
    rows = await session.execute(
        text("""
            SELECT d.key, d.contact_id, c.email, c.user_id, c.phone, c.timezone, c.traits
            FROM deliveries d JOIN contacts c ON c.id = d.contact_id
            WHERE d.run_id = :run AND d.contact_id > :after AND d.status = 'queued'
            ORDER BY d.contact_id LIMIT :limit
        """),
        {"run": run_id, "after": after_contact_id, "limit": limit},
    )
    return [
        PendingDelivery(
            key=r.key, contact_id=r.contact_id, email=r.email,
            contact={"id": r.contact_id, "user_id": r.user_id, "email": r.email, "phone": r.phone,
                     "timezone": r.timezone, "traits": r.traits},
        )
        for r in rows
    ]


async def record_outcome(
    conn: AsyncConnection, contact_id: int, key: str, *, status: str, provider_message_id: str | None,
    error: str | None,
) -> None:
    """Mark one delivery sent or failed, on an autocommit connection (see store.db.make_outcome_engine).

    One short commit per message keeps the sent-but-unrecorded window to one message per SMTP lane.
    """
    await conn.execute(
        update(Delivery)
        .where(Delivery.contact_id == contact_id, Delivery.key == key, Delivery.status == "queued")
        .values(status=status, provider_message_id=provider_message_id, error=error,
                attempts=Delivery.attempts + 1, sent_at=func.now() if status == "sent" else None)
    )


@dataclass(frozen=True)
class RunCounts:
    total: int
    queued: int
    sent: int
    failed: int


async def run_counts(session: AsyncSession, run_id: int) -> RunCounts:
    row = (await session.execute(
        text("""
            SELECT count(*) AS total,
                   count(*) FILTER (WHERE status = 'queued') AS queued,
                   count(*) FILTER (WHERE status = 'sent') AS sent,
                   count(*) FILTER (WHERE status = 'failed') AS failed
            FROM deliveries WHERE run_id = :run
        """),
        {"run": run_id},
    )).one()
    return RunCounts(total=row.total, queued=row.queued, sent=row.sent, failed=row.failed)


async def finish_run(session: AsyncSession, run_id: int) -> RunCounts:
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id, lock=True)
    counts = await run_counts(session, run_id)
    if run.finished_at is None:
        run.status = "completed"
        run.finished_at = datetime.now().astimezone()
        if campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED):
            campaign.status = CampaignStatus.COMPLETED.value
    return counts




async def steer(session: AsyncSession, campaign_id: int, target: CampaignStatus) -> tuple[Campaign, CampaignRun | None]:
    """Move a campaign to `target` (pause, resume) under its row lock; also the run whose workflow must be told,
    if one is still going."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    campaign.status = transition(CampaignStatus(campaign.status), target).value
    run = await latest_run(session, campaign_id)
    return campaign, run if run is not None and run.finished_at is None else None
