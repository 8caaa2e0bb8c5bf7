"""Campaign lifecycle and the delivery key that makes every send exactly-once."""

from __future__ import annotations

from enum import StrEnum

from domain.errors import InvalidTransition


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


_ALLOWED: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.PENDING_APPROVAL, CampaignStatus.APPROVED,
                                     CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.PENDING_APPROVAL: frozenset({CampaignStatus.APPROVED, CampaignStatus.DRAFT,
                                                CampaignStatus.CANCELLED}),
    CampaignStatus.APPROVED: frozenset({CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.SCHEDULED: frozenset({CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.RUNNING: frozenset({CampaignStatus.PAUSED, CampaignStatus.COMPLETED, CampaignStatus.CANCELLED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.RUNNING, CampaignStatus.CANCELLED}),
    CampaignStatus.COMPLETED: frozenset(),
    CampaignStatus.CANCELLED: frozenset(),
}


def transition(current: CampaignStatus, target: CampaignStatus) -> CampaignStatus:
    """The new status, or InvalidTransition naming what is allowed from here."""
    if target not in _ALLOWED[current]:
        allowed = ", ".join(sorted(_ALLOWED[current])) or "nothing (it is final)"
        raise InvalidTransition(f"A {current} campaign cannot become {target}; allowed from {current}: {allowed}.")
    return target


def delivery_key(campaign_id: int, step: str, contact_id: int) -> str:
    """The business key of one message: DB unique key, Message-ID seed and provider idempotency key."""
    return f"delivery:{campaign_id}:{step}:{contact_id}"


def message_id(key: str, domain: str) -> str:
    """An RFC 5322 Message-ID derived from the delivery key, so a resend is recognisably the same message."""
    return "<" + key.replace(":", ".") + "@" + domain + ">"
