"""Campaign lifecycle, approval policy, variant assignment and delivery keys."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.campaigns import (
    BUCKETS,
    FINAL,
    HOLDOUT,
    ApprovalPolicy,
    CampaignStatus,
    Variant,
    after_run,
    allowed,
    approval_reasons,
    assign,
    bucket,
    check_approver,
    delivery_key,
    launch_target,
    lift,
    message_id,
    steer_target,
    thresholds,
    transition,
)
from domain.errors import Conflict, DomainError, InvalidTransition


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
    with pytest.raises(InvalidTransition, match="allowed from scheduled: cancelled, paused, running"):
        transition(CampaignStatus.SCHEDULED, CampaignStatus.COMPLETED)


def test_only_a_recurring_campaign_pauses_while_scheduled_and_resumes_to_scheduled() -> None:
    with pytest.raises(Conflict, match="scheduled for one time cannot be paused"):
        steer_target(CampaignStatus.SCHEDULED, CampaignStatus.PAUSED, recurring=False, run_going=False)
    assert steer_target(CampaignStatus.SCHEDULED, CampaignStatus.PAUSED, recurring=True,
                        run_going=False) is CampaignStatus.PAUSED
    assert steer_target(CampaignStatus.PAUSED, CampaignStatus.RUNNING, recurring=True,
                        run_going=False) is CampaignStatus.SCHEDULED
    assert steer_target(CampaignStatus.PAUSED, CampaignStatus.RUNNING, recurring=True,
                        run_going=True) is CampaignStatus.RUNNING
    assert steer_target(CampaignStatus.PAUSED, CampaignStatus.RUNNING, recurring=False,
                        run_going=False) is CampaignStatus.RUNNING
    with pytest.raises(InvalidTransition, match="Only a paused campaign"):
        steer_target(CampaignStatus.SCHEDULED, CampaignStatus.RUNNING, recurring=True, run_going=False)


@pytest.mark.parametrize(("current", "cancelled", "recurring", "more", "target"), [
    ("running", False, False, False, "completed"),
    ("running", False, True, True, "scheduled"),   # waits for the next occurrence
    ("running", False, True, False, "completed"),  # that was the last one
    ("paused", False, True, True, None),           # stays paused; resume makes it scheduled
    ("paused", False, False, False, "completed"),
    ("running", True, True, True, "cancelled"),
    ("scheduled", True, False, False, "cancelled"),
    ("cancelled", True, True, True, None),
    ("completed", False, False, False, None),
])
def test_where_a_campaign_goes_when_a_run_closes(current: str, cancelled: bool, recurring: bool, more: bool,
                                                 target: str | None) -> None:
    moved = after_run(CampaignStatus(current), cancelled=cancelled, recurring=recurring, more=more)
    assert moved == (CampaignStatus(target) if target else None)
    if moved is not None:
        transition(CampaignStatus(current), moved)  # every move it names is one the lifecycle allows


@given(st.integers(1, 2**62), st.sampled_from(["s1", "email", "wait-2"]), st.integers(1, 2**62))
def test_delivery_key_is_deterministic_and_injective(campaign: int, step: str, contact: int) -> None:
    key = delivery_key(campaign, step, contact)
    assert key == delivery_key(campaign, step, contact)
    assert key.split(":") == ["delivery", str(campaign), step, str(contact)]
    mid = message_id(key, "example.com")
    assert mid.startswith("<delivery.") and mid.endswith("@example.com>") and ":" not in mid


# Approval policy and the four-eyes rule.

def test_policy_parses_the_settings_forms() -> None:
    assert ApprovalPolicy.parse("never") == ApprovalPolicy(incentive=False) == ApprovalPolicy.parse("")
    assert ApprovalPolicy.parse("always").always
    assert ApprovalPolicy.parse("audience>10000,incentive") == ApprovalPolicy(audience_over=10_000, incentive=True)
    with pytest.raises(ValueError, match="audience>N"):
        ApprovalPolicy.parse("audience>=5")


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.booleans(), st.booleans(), st.booleans())
def test_approval_is_needed_exactly_when_a_rule_says_so(audience: int, over: int, incentive: bool, rule: bool,
                                                        requested: bool) -> None:
    policy = ApprovalPolicy(audience_over=over, incentive=rule)
    reasons = approval_reasons(policy, audience=audience, incentive=incentive, requested=requested)
    assert bool(reasons) == (audience > over or (rule and incentive) or requested)


@given(st.sampled_from(list(CampaignStatus)), st.booleans(), st.booleans())
def test_launch_without_a_required_approval_is_refused(status: CampaignStatus, needed: bool, later: bool) -> None:
    reasons = ["its audience (5) is over 1"] if needed else []
    launchable = status is CampaignStatus.APPROVED or (status is CampaignStatus.DRAFT and not needed)
    try:
        target = launch_target(status, reasons, later=later)
    except Conflict as exc:
        assert not launchable
        if needed and status is CampaignStatus.DRAFT:
            assert "needs approval" in str(exc)
    else:
        assert launchable
        assert target is (CampaignStatus.SCHEDULED if later else CampaignStatus.RUNNING)


def test_creator_cannot_approve_their_own_campaign() -> None:
    with pytest.raises(Conflict, match="created it"):
        check_approver(7, 7)
    check_approver(7, 8)
    check_approver(None, 8)


@given(st.lists(st.sampled_from(list(CampaignStatus)), max_size=12))
def test_no_path_leaves_a_final_state(path: list[CampaignStatus]) -> None:
    status, finished = CampaignStatus.DRAFT, False
    for target in path:
        if target in allowed(status):
            assert not finished
            status = transition(status, target)
            finished = status in FINAL


# Variants and holdout.

variants_st = st.lists(st.integers(1, 20), min_size=0, max_size=4).map(
    lambda ws: [Variant(chr(ord("a") + i), w) for i, w in enumerate(ws)])


@given(st.integers(1, 10**9), st.integers(1, 10**12), variants_st, st.integers(0, 5000))
def test_assignment_is_stable_and_inside_the_groups(campaign: int, contact: int, variants: list[Variant],
                                                    holdout: int) -> None:
    group = assign(campaign, contact, variants, holdout)
    assert group == assign(campaign, contact, variants, holdout)
    assert group in {v.name for v in variants} | {HOLDOUT, "a"}
    assert (group == HOLDOUT) == (bucket(campaign, contact) < holdout)


@given(st.integers(1, 10**6), variants_st.filter(bool), st.integers(0, 3000))
@settings(max_examples=20, deadline=None)
def test_proportions_follow_weights_and_holdout(campaign: int, variants: list[Variant], holdout: int) -> None:
    n = 20_000
    counts = Counter(assign(campaign, contact, variants, holdout) for contact in range(1, n + 1))
    total = sum(v.weight for v in variants)
    expected = {HOLDOUT: holdout / BUCKETS} | {
        v.name: (1 - holdout / BUCKETS) * v.weight / total for v in variants}
    for name, share in expected.items():
        assert abs(counts[name] / n - share) < 0.02, (name, counts)


def test_variant_rules_are_checked() -> None:
    with pytest.raises(DomainError, match="unique"):
        thresholds([Variant("a", 1), Variant("a", 2)], 0)
    with pytest.raises(DomainError, match="holdout"):
        thresholds([], BUCKETS)
    assert thresholds([], 0) == [(BUCKETS, "a")]
    assert lift(0.12, 0.10) == pytest.approx(0.2) and lift(0.1, 0) is None
