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

from domain.campaigns import (
    BUCKETS,
    HOLDOUT,
    ApprovalPolicy,
    CampaignStatus,
    Variant,
    after_run,
    launch_target,
    steer_target,
    thresholds,
)
from domain.campaigns_timing import Recurrence, run_step
from domain.errors import NotFound
from store.campaigns import lifecycle
from store.campaigns.definitions import get_campaign
from store.campaigns.lifecycle import Actor
from store.campaigns.models import Campaign, CampaignRun, Delivery


def workflow_id(campaign_id: int, number: int) -> str:
    return f"campaign:{campaign_id}:run:{number}"


async def start_run(session: AsyncSession, campaign_id: int, policy: ApprovalPolicy | None = None,
                    actor: Actor | None = None, at: datetime | None = None) -> CampaignRun:
    """Move the campaign to running (scheduled, when it starts `at` a later time) and record its next run (the
    caller starts the workflow). Refused with a Conflict when the approval policy requires an approval the campaign
    does not have."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    reasons = await lifecycle.reasons_for_approval(session, campaign, policy or ApprovalPolicy(incentive=False))
    target = launch_target(CampaignStatus(campaign.status), reasons, later=at is not None)
    await lifecycle.record(session, campaign, target, actor or Actor.system(),
                           f"scheduled for {at.isoformat()}" if at else "launched")
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
            func.count().filter(Delivery.status == "suppressed").label("suppressed"),
            func.count().filter(Delivery.status == "holdout").label("holdout"),
            func.count().filter(Delivery.status == "cancelled").label("cancelled"),
            func.count().filter(Delivery.status == "deferred").label("deferred"),
        ).where(Delivery.run_id == run.id).lateral()
    )
    rows = await session.execute(select(run, counts).join(counts, true()))
    return {r[0].campaign_id: (r[0], row_counts(r)) for r in rows}


async def get_run(session: AsyncSession, run_id: int) -> CampaignRun:
    run = await session.get(CampaignRun, run_id)
    if run is None:
        raise NotFound(f"Campaign run {run_id} does not exist.")
    return run


async def snapshot_audience(session: AsyncSession, run_id: int) -> int:
    """Snapshot the audience into the run's deliveries in one statement: explicit ids and segment members, minus
    exclusion segments. Each recipient gets its variant (hash of campaign and contact, as domain/campaigns.py
    computes it); holdout recipients are recorded `holdout`, suppressed addresses and unsubscribed contacts
    `suppressed`, the rest `queued`; for a local-time campaign, its zone (the contact's, or its `timezone` trait).
    The keys carry the run's step (`run_step`), so each occurrence of a recurring campaign has its own. Re-running
    it adds nothing. The run's total counts every row."""
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id)
    audience = campaign.audience
    bounds = thresholds([Variant(str(v["name"]), int(v.get("weight", 1))) for v in campaign.variants],
                        campaign.holdout_bp)
    cases = " ".join(f"WHEN b < :t{i} THEN :g{i}" for i in range(len(bounds)))
    params: dict[str, Any] = {f"t{i}": upper for i, (upper, _) in enumerate(bounds)}
    params |= {f"g{i}": name for i, (_, name) in enumerate(bounds)}
    await session.execute(
        text(f"""
            INSERT INTO deliveries (contact_id, key, campaign_id, run_id, step, channel, status, variant, error,
                                    zone)
            SELECT id, 'delivery:' || :campaign || ':' || :step || ':' || id, :campaign, :run, :step, :channel,
                   CASE WHEN variant = :holdout THEN 'holdout' WHEN blocked IS NOT NULL THEN 'suppressed'
                        ELSE 'queued' END,
                   variant, blocked, zone
            FROM (
                SELECT a.id, CASE {cases} END AS variant,
                       CASE WHEN :local THEN coalesce(nullif(a.timezone, ''), nullif(a.traits ->> 'timezone', ''))
                       END AS zone,
                       CASE WHEN :screen_email AND EXISTS (
                                SELECT 1 FROM suppressions s WHERE s.channel = 'email' AND s.address_hash =
                                    encode(sha256(convert_to('email:' || lower(trim(a.email)), 'UTF8')), 'hex'))
                            THEN 'address suppressed'
                            WHEN NOT coalesce((
                                SELECT p.subscribed FROM contact_preferences p
                                WHERE p.contact_id = a.id AND p.topic = '*' AND p.channel IN (:pref, '*')
                                ORDER BY p.channel = '*' LIMIT 1), true)
                            THEN 'unsubscribed' END AS blocked
                FROM (
                    SELECT c.id, c.email, c.timezone, c.traits,
                           ('x' || substr(encode(sha256(convert_to(:campaign || ':' || c.id, 'UTF8')), 'hex'), 1, 15)
                           )::bit(60)::bigint % :buckets AS b
                    FROM contacts c
                    WHERE (c.id = ANY(:ids) OR c.id IN (
                              SELECT contact_id FROM segment_members WHERE segment_id = ANY(:segs)
                                                                        AND exited_at IS NULL))
                      AND c.id NOT IN (SELECT contact_id FROM segment_members
                                       WHERE segment_id = ANY(:excl) AND exited_at IS NULL)
                ) a
            ) r
            ON CONFLICT (contact_id, key) DO NOTHING
        """),
        # With a fallback chain only opting out of everything is screened here; the delivery service screens each
        # channel's suppressions and preferences as it reaches it.
        {"campaign": campaign.id, "step": run_step(run.number), "run": run_id, "holdout": HOLDOUT,
         "local": campaign.local_time is not None,
         "channel": campaign.chain[0], "screen_email": campaign.chain == ["email"],
         "pref": campaign.chain[0] if len(campaign.chain) == 1 else "*",
         "buckets": BUCKETS, "ids": [int(c) for c in audience.get("contact_ids", [])],
         "segs": [int(c) for c in audience.get("segment_ids", [])],
         "excl": [int(c) for c in audience.get("exclude_segment_ids", [])], **params},
    )
    total = await session.scalar(text("SELECT count(*) FROM deliveries WHERE run_id = :run"), {"run": run_id})
    run.total = int(total or 0)
    run.status = "running"
    return run.total


async def begin_run(session: AsyncSession, run_id: int) -> bool:
    """A scheduled run's time has come: the campaign moves scheduled → running. False when it was cancelled
    meanwhile (the run then closes as cancelled)."""
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id, lock=True)
    if campaign.status == CampaignStatus.SCHEDULED:
        await lifecycle.record(session, campaign, CampaignStatus.RUNNING, Actor.system(f"run {run.number}"),
                               "scheduled time reached")
    return campaign.status in (CampaignStatus.RUNNING, CampaignStatus.PAUSED)


_IN_ZONES = "(CAST(:zones AS text[]) IS NULL OR coalesce(d.zone, '') = ANY(CAST(:zones AS text[])))"


async def partition(session: AsyncSession, run_id: int, size: int, zones: Sequence[str] | None = None) -> list[int]:
    """Upper contact ids of consecutive ranges holding at most `size` queued deliveries each (of the recipients in
    `zones`, when given: a local-time slot), so concurrent batches never overlap (the last bound is the largest
    queued contact id)."""
    rows = await session.scalars(text(f"""
        SELECT contact_id FROM (
            SELECT contact_id, row_number() OVER (ORDER BY contact_id) AS n, count(*) OVER () AS total
            FROM deliveries d WHERE run_id = :run AND status = 'queued' AND {_IN_ZONES}
        ) q WHERE n % :size = 0 OR n = total ORDER BY contact_id
    """), {"run": run_id, "size": size, "zones": list(zones) if zones is not None else None})
    return [int(r) for r in rows]


async def queued_zones(session: AsyncSession, run_id: int) -> list[str | None]:
    """The zone names of a local-time run's queued recipients, once each (None: the contact has none)."""
    rows = await session.scalars(text(
        "SELECT DISTINCT zone FROM deliveries WHERE run_id = :run AND status = 'queued'"), {"run": run_id})
    return list(rows)


@dataclass(frozen=True)
class PendingDelivery:
    key: str
    contact_id: int
    email: str | None
    contact: dict[str, Any]
    variant: str | None = None


async def queued_page(session: AsyncSession, run_id: int, after_contact_id: int, limit: int,
                      until_contact_id: int | None = None, zones: Sequence[str] | None = None) -> list[PendingDelivery]:
    """The next page of deliveries not yet sent, keyed by contact id (stable across retries), within
    (after, until] when a range is given, of the recipients in `zones` when given."""
    rows = await session.execute(
        text(f"""
            SELECT d.key, d.contact_id, d.variant, c.email, c.user_id, c.phone, c.timezone, c.traits
            FROM deliveries d JOIN contacts c ON c.id = d.contact_id
            WHERE d.run_id = :run AND d.contact_id > :after AND d.contact_id <= :until AND d.status = 'queued'
              AND {_IN_ZONES}
            ORDER BY d.contact_id LIMIT :limit
        """),
        {"run": run_id, "after": after_contact_id, "limit": limit, "zones": list(zones) if zones is not None else None,
         "until": until_contact_id if until_contact_id is not None else 2**63 - 1},
    )
    return [
        PendingDelivery(
            key=r.key, contact_id=r.contact_id, email=r.email, variant=r.variant,
            contact={"id": r.contact_id, "user_id": r.user_id, "email": r.email, "phone": r.phone,
                     "timezone": r.timezone, "traits": r.traits},
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class Outcome:
    contact_id: int
    key: str
    status: str  # sent | failed
    provider_message_id: str | None
    error: str | None


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


async def record_outcomes(conn: AsyncConnection, outcomes: Sequence[Outcome]) -> None:
    """Mark several deliveries sent or failed in one statement, on an autocommit connection (what
    `activities.campaigns.OutcomeRecorder` flushes while the SMTP lanes keep sending)."""
    if not outcomes:
        return
    await conn.execute(text("""
        UPDATE deliveries d SET status = o.status, provider_message_id = o.pid, error = o.error,
            attempts = d.attempts + 1, sent_at = CASE WHEN o.status = 'sent' THEN now() END
        FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:s AS text[]), CAST(:p AS text[]),
                    CAST(:e AS text[])) AS o(contact_id, key, status, pid, error)
        WHERE d.contact_id = o.contact_id AND d.key = o.key AND d.status = 'queued'
    """), {"c": [o.contact_id for o in outcomes], "k": [o.key for o in outcomes],
           "s": [o.status for o in outcomes], "p": [o.provider_message_id for o in outcomes],
           "e": [o.error for o in outcomes]})


async def settle_from_plans(session: AsyncSession, pairs: Sequence[tuple[int, str]]) -> None:
    """After the delivery service took a batch: each delivery's status from its plan's attempts, in one statement.
    `sent` once any channel accepted it, `deferred` while the plan still waits (quiet hours, a receipt window, a
    retry: the sweeper carries on), else `suppressed` when every channel was screened out, else `failed`."""
    if not pairs:
        return
    # Driven by the batch's keys, each plan's attempts aggregated by a lateral lookup: as a semi-join the planner
    # hashed full scans of delivery_plans and delivery_attempts for every batch (quadratic over a large run). The
    # status test is kept off the (campaign, status) index (`|| ''`): right after a snapshot the statistics still
    # say few deliveries are queued, and the planner hashed all of them for every batch instead of 500 key lookups.
    await session.execute(text("""
        UPDATE deliveries d SET status = s.status, channel = coalesce(s.channel, d.channel), attempts = s.n,
            error = CASE WHEN s.status = 'sent' THEN NULL ELSE s.error END,
            sent_at = CASE WHEN s.status = 'sent' THEN now() END
        FROM (
            SELECT u.c AS contact_id, u.k AS key,
                   CASE WHEN x.sent THEN 'sent' WHEN p.wake_at IS NOT NULL THEN 'deferred'
                        WHEN x.suppressed THEN 'suppressed' ELSE 'failed' END AS status,
                   x.channel, x.n, x.error
            FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[])) AS u(c, k)
            CROSS JOIN LATERAL (SELECT wake_at FROM delivery_plans WHERE contact_id = u.c AND key = u.k) p
            CROSS JOIN LATERAL (
                SELECT bool_or(a.status IN ('sent', 'delivered', 'opened', 'clicked', 'complained')) AS sent,
                       bool_and(a.status = 'suppressed') AS suppressed,
                       (array_agg(a.channel ORDER BY a.attempt DESC))[1] AS channel, count(a.attempt) AS n,
                       (array_agg(a.error ORDER BY a.attempt DESC))[1] AS error
                FROM delivery_attempts a WHERE a.contact_id = u.c AND a.key = u.k) x
        ) s
        WHERE d.contact_id = s.contact_id AND d.key = s.key AND d.status || '' IN ('queued', 'deferred')
    """), {"c": [p[0] for p in pairs], "k": [p[1] for p in pairs]})


async def channel_counts(session: AsyncSession, run_id: int) -> dict[str, dict[str, int]]:
    """Per channel, the run's attempts by state (live: receipts and the sweeper's fallbacks move them on). A run
    sent on the direct email path has no attempts; its deliveries are counted under their channel instead."""
    rows = await session.execute(text("""
        SELECT a.channel, a.status, count(*) AS n
        FROM deliveries d JOIN delivery_attempts a ON a.contact_id = d.contact_id AND a.key = d.key
        WHERE d.run_id = :run GROUP BY 1, 2
        UNION ALL
        SELECT d.channel, d.status, count(*) FROM deliveries d
        WHERE d.run_id = :run AND d.status IN ('sent', 'failed', 'suppressed')
          AND NOT EXISTS (SELECT 1 FROM delivery_plans p WHERE p.contact_id = d.contact_id AND p.key = d.key)
        GROUP BY 1, 2
    """), {"run": run_id})
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        out.setdefault(r.channel, {})[r.status] = out.get(r.channel, {}).get(r.status, 0) + int(r.n)
    return out


@dataclass(frozen=True)
class RunCounts:
    total: int
    queued: int
    sent: int
    failed: int
    suppressed: int = 0
    holdout: int = 0
    cancelled: int = 0
    deferred: int = 0


_COUNTS = """
    count(*) AS total, count(*) FILTER (WHERE status = 'queued') AS queued,
    count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'suppressed') AS suppressed, count(*) FILTER (WHERE status = 'holdout') AS holdout,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled, count(*) FILTER (WHERE status = 'deferred') AS deferred
"""


def row_counts(row: Any) -> RunCounts:
    return RunCounts(total=row.total, queued=row.queued, sent=row.sent, failed=row.failed,
                     suppressed=row.suppressed, holdout=row.holdout, cancelled=row.cancelled,
                     deferred=row.deferred)


async def run_counts(session: AsyncSession, run_id: int) -> RunCounts:
    return row_counts((await session.execute(text(f"SELECT {_COUNTS} FROM deliveries WHERE run_id = :run"),
                                          {"run": run_id})).one())


@dataclass(frozen=True)
class VariantResult:
    counts: RunCounts
    delivered: int
    opened: int
    clicked: int
    converted: int


async def variant_results(session: AsyncSession, run_id: int,
                          conversion_event: str | None) -> dict[str, VariantResult]:
    """Per variant (the holdout included): the status counts, engagement from the delivery attempts' receipts
    (delivered, opened, clicked: a later state counts for the earlier ones), and conversions, contacts with a
    `conversion_event` at or after their send (for the holdout, after the snapshot)."""
    rows = await session.execute(text(f"""
        SELECT coalesce(d.variant, 'a') AS variant, {_COUNTS.replace("status", "d.status")},
               count(*) FILTER (WHERE e.delivered) AS delivered, count(*) FILTER (WHERE e.opened) AS opened,
               count(*) FILTER (WHERE e.clicked) AS clicked,
               count(*) FILTER (WHERE CAST(:event AS text) IS NOT NULL AND EXISTS (
                   SELECT 1 FROM events ev WHERE ev.contact_id = d.contact_id AND ev.event = :event
                     AND ev.timestamp >= coalesce(d.sent_at, d.created_at))) AS converted
        FROM deliveries d
        LEFT JOIN LATERAL (
            SELECT bool_or(a.status IN ('delivered', 'opened', 'clicked', 'complained')) AS delivered,
                   bool_or(a.opened_at IS NOT NULL OR a.clicked_at IS NOT NULL) AS opened,
                   bool_or(a.clicked_at IS NOT NULL) AS clicked
            FROM delivery_attempts a WHERE a.contact_id = d.contact_id AND a.key = d.key
        ) e ON true
        WHERE d.run_id = :run
        GROUP BY 1 ORDER BY 1
    """), {"run": run_id, "event": conversion_event})
    return {r.variant: VariantResult(row_counts(r), r.delivered, r.opened, r.clicked, r.converted) for r in rows}


async def finish_run(session: AsyncSession, run_id: int, *, cancelled: bool = False) -> RunCounts:
    """Close the run: completed, or cancelled with its unsent recipients recorded `cancelled`; the campaign moves as
    `after_run` says (a recurring one back to scheduled while occurrences remain). Idempotent."""
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id, lock=True)
    if run.finished_at is None:
        now = datetime.now().astimezone()
        cancelled = cancelled or campaign.status == CampaignStatus.CANCELLED
        if cancelled:
            await session.execute(text("""
                UPDATE deliveries SET status = 'cancelled', error = 'campaign cancelled'
                WHERE run_id = :run AND status = 'queued'
            """), {"run": run_id})
            run.cancelled_at = now
        run.status = "cancelled" if cancelled else "completed"
        run.finished_at = now
        recurrence = Recurrence.from_json(campaign.recurrence) if campaign.recurrence else None
        more = recurrence is not None and recurrence.next_after(run.scheduled_at or now) is not None
        target = after_run(CampaignStatus(campaign.status), cancelled=cancelled, recurring=recurrence is not None,
                           more=more)
        if target is not None:
            note = "waiting for the next occurrence" if target is CampaignStatus.SCHEDULED else None
            await lifecycle.record(session, campaign, target, Actor.system(f"run {run.number}"), note)
    return await run_counts(session, run_id)


async def steer(session: AsyncSession, campaign_id: int, wanted: CampaignStatus,
                actor: Actor | None = None) -> tuple[Campaign, CampaignRun | None]:
    """Pause (`wanted` paused) or resume a campaign under its row lock (`steer_target`: a recurring campaign also
    between occurrences); also the run whose workflow must be told, if one is still going."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    run = await latest_run(session, campaign_id)
    going = run if run is not None and run.finished_at is None else None
    target = steer_target(CampaignStatus(campaign.status), wanted, recurring=campaign.recurrence is not None,
                          run_going=going is not None)
    await lifecycle.record(session, campaign, target, actor or Actor.system())
    return campaign, going
