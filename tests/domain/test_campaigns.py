"""Campaign lifecycle rules and delivery keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.campaigns import CampaignStatus, delivery_key, message_id, transition
from domain.errors import InvalidTransition


def test_lifecycle_happy_path() -> None:
    status = CampaignStatus.DRAFT
    for target in ("pending_approval", "approved", "scheduled", "running", "paused", "running", "completed"):
        status = transition(status, CampaignStatus(target))
    assert status is CampaignStatus.COMPLETED


@pytest.mark.parametrize("final", [CampaignStatus.COMPLETED, CampaignStatus.CANCELLED])
@pytest.mark.parametrize("target", list(CampaignStatus))
def test_final_states_never_move(final: CampaignStatus, target: CampaignStatus) -> None:
    with pytest.raises(InvalidTransition, match="final"):
        transition(final, target)


def test_refusal_lists_allowed_moves() -> None:
    with pytest.raises(InvalidTransition, match="allowed from scheduled: cancelled, running"):
        transition(CampaignStatus.SCHEDULED, CampaignStatus.PAUSED)


@given(st.integers(1, 2**62), st.sampled_from(["s1", "email", "wait-2"]), st.integers(1, 2**62))
def test_delivery_key_is_deterministic_and_injective(campaign: int, step: str, contact: int) -> None:
    key = delivery_key(campaign, step, contact)
    assert key == delivery_key(campaign, step, contact)
    assert key.split(":") == ["delivery", str(campaign), step, str(contact)]
    mid = message_id(key, "example.com")
    assert mid.startswith("<delivery.") and mid.endswith("@example.com>") and ":" not in mid
