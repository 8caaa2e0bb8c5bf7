"""Campaign lifecycle moves with their audit trail: submit, approve, reject, cancel, and the audience size the
approval policy weighs. Every move takes the campaign's row lock and writes one `campaign_transitions` row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.campaigns import ApprovalPolicy, CampaignStatus, approval_reasons, check_approver, transition
from domain.errors import Conflict
from store.campaigns.definitions import get_campaign
from store.campaigns.models import Campaign, CampaignRun, Transition
from store.keys import ApiKey


@dataclass(frozen=True)
class Actor:
    """Who made a move: the API key's id and name (None for the system, e.g. a run that finished)."""

    key_id: int | None
    name: str

    @staticmethod
    def system(name: str = "system") -> Actor:
        return Actor(None, name)


async def actor_for(session: AsyncSession, prefix: str) -> Actor:
    """The key behind an authenticated request (its prefix was checked by the scope dependency)."""
    row = (await session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.prefix == prefix))).one_or_none()
    return Actor(None, "unknown key") if row is None else Actor(row.id, row.name)


async def record(session: AsyncSession, campaign: Campaign, target: CampaignStatus, actor: Actor,
                 note: str | None = None) -> None:
    """Move the (locked) campaign to `target` if the lifecycle allows it, and audit the move."""
    current = CampaignStatus(campaign.status)
    campaign.status = transition(current, target).value
    session.add(Transition(campaign_id=campaign.id, from_status=current.value, to_status=target.value,
                           key_id=actor.key_id, key_name=actor.name, note=note))


async def transitions(session: AsyncSession, campaign_id: int, *, after_id: int = 0,
                      limit: int = 100) -> Sequence[Transition]:
    await get_campaign(session, campaign_id)
    rows = await session.scalars(select(Transition).where(Transition.campaign_id == campaign_id,
                                                          Transition.id > after_id)
                                 .order_by(Transition.id).limit(limit))
    return rows.all()


async def audience_size(session: AsyncSession, campaign: Campaign) -> int:
    """Explicit ids plus segment members, before exclusions: what the approval policy weighs (an upper bound)."""
    audience = campaign.audience
    return int(await session.scalar(text("""
        SELECT count(*) FROM (
            SELECT unnest(CAST(:ids AS bigint[]))
            UNION
            SELECT contact_id FROM segment_members WHERE segment_id = ANY(:segs) AND exited_at IS NULL
        ) a
    """), {"ids": [int(i) for i in audience.get("contact_ids", [])],
           "segs": [int(i) for i in audience.get("segment_ids", [])]}) or 0)


async def reasons_for_approval(session: AsyncSession, campaign: Campaign, policy: ApprovalPolicy) -> list[str]:
    return approval_reasons(policy, audience=await audience_size(session, campaign),
                            incentive=bool(campaign.incentive), requested=campaign.approval_required)


async def submit(session: AsyncSession, campaign_id: int, actor: Actor, note: str | None) -> Campaign:
    campaign = await get_campaign(session, campaign_id, lock=True)
    await record(session, campaign, CampaignStatus.PENDING_APPROVAL, actor, note)
    return campaign


async def approve(session: AsyncSession, campaign_id: int, actor: Actor, note: str | None) -> Campaign:
    campaign = await get_campaign(session, campaign_id, lock=True)
    if actor.key_id is not None:
        check_approver(campaign.created_by_key_id, actor.key_id)
    _submitted(campaign)
    await record(session, campaign, CampaignStatus.APPROVED, actor, note)
    return campaign


async def reject(session: AsyncSession, campaign_id: int, actor: Actor, note: str | None) -> Campaign:
    campaign = await get_campaign(session, campaign_id, lock=True)
    _submitted(campaign)
    await record(session, campaign, CampaignStatus.DRAFT, actor, note or "rejected")
    return campaign


def _submitted(campaign: Campaign) -> None:
    # Approving (or rejecting) a draft directly would skip the submission the approver is meant to review.
    if campaign.status != CampaignStatus.PENDING_APPROVAL:
        raise Conflict(f"Campaign {campaign.id} is {campaign.status}, not pending_approval: only a submitted "
                       "campaign can be approved or rejected.")


async def cancel(session: AsyncSession, campaign_id: int, actor: Actor,
                 note: str | None) -> tuple[Campaign, CampaignRun | None]:
    """Cancel the campaign; also the run whose workflow must stop at its next batch, if one is going."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    await record(session, campaign, CampaignStatus.CANCELLED, actor, note)
    run = await session.scalar(select(CampaignRun).where(CampaignRun.campaign_id == campaign_id,
                                                         CampaignRun.finished_at.is_(None))
                               .order_by(CampaignRun.number.desc()).limit(1))
    return campaign, run
