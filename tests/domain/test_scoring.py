"""Computed traits: decay halves points per half-life, stages follow thresholds, RFM and churn are monotone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.scoring import (
    STAGES,
    DailyCount,
    LeadModel,
    RfmModel,
    band,
    cadence,
    churn_risk,
    decayed,
    lead_score,
    lifecycle_stage,
    rfm,
)

MODEL = LeadModel()
ages = st.integers(0, 3650)


@given(st.floats(0, 1000), ages)
def test_points_halve_every_half_life(points: float, age: int) -> None:
    later = decayed(points, age + int(MODEL.half_life_days), MODEL.half_life_days)
    assert later == pytest.approx(decayed(points, age, MODEL.half_life_days) / 2, rel=1e-9, abs=1e-12)


activity = st.lists(st.builds(DailyCount, st.sampled_from(["$page", "demo_requested", "unknown"]), ages,
                              st.integers(1, 5)), max_size=20)


@settings(max_examples=200)
@given(activity, st.builds(DailyCount, st.sampled_from(["$page", "demo_requested"]), ages, st.integers(1, 5)))
def test_more_activity_never_lowers_the_score(events: list[DailyCount], extra: DailyCount) -> None:
    assert lead_score(MODEL, [*events, extra], []) >= lead_score(MODEL, events, [])


@given(activity, st.integers(1, 400))
def test_older_activity_scores_less(events: list[DailyCount], shift: int) -> None:
    older = [DailyCount(e.event, e.age_days + shift, e.count) for e in events]
    assert lead_score(MODEL, older, ["email"]) <= lead_score(MODEL, events, ["email"])


@given(st.floats(0, 500), st.floats(0, 500), st.booleans())
def test_stage_is_monotone_in_score_and_customers_stay_customers(a: float, b: float, customer: bool) -> None:
    low, high = sorted((a, b))
    assert STAGES.index(lifecycle_stage(MODEL, low, customer)) <= STAGES.index(lifecycle_stage(MODEL, high, customer))
    assert (lifecycle_stage(MODEL, low, True) == "customer")


def test_thresholds_set_the_stage() -> None:
    assert [lifecycle_stage(MODEL, s, False) for s in (0, 9.99, 10, 49.9, 50)] == [
        "subscriber", "subscriber", "lead", "lead", "mql"]
    assert lead_score(MODEL, [DailyCount("demo_requested", 30, 2)], ["email", "email"]) == pytest.approx(30.0)


@given(st.integers(0, 400), st.integers(0, 400), st.integers(1, 50), st.floats(0, 5000))
def test_rfm_recent_frequent_buyers_rank_at_least_as_high(r1: int, r2: int, f: int, m: float) -> None:
    order = ["hibernating", "at_risk", "promising", "new", "loyal", "champions"]
    recent, stale = sorted((r1, r2))
    assert (band(recent, RfmModel().recency, lower_is_better=True)
            >= band(stale, RfmModel().recency, lower_is_better=True))
    tier = rfm(RfmModel(), recent, f, m)
    assert tier in order
    assert rfm(RfmModel(), None, 0, 0) is None


def test_rfm_tiers() -> None:
    assert rfm(RfmModel(), 2, 10, 3000) == "champions"
    assert rfm(RfmModel(), 3, 1, 20) == "new"
    assert rfm(RfmModel(), 200, 5, 800) == "at_risk"
    assert rfm(RfmModel(), 200, 1, 20) == "hibernating"


@given(st.integers(0, 1000), st.integers(0, 1000), st.floats(1, 100))
def test_churn_risk_grows_with_silence_and_stays_below_one(d1: int, d2: int, rhythm: float) -> None:
    quiet, silent = sorted((d1, d2))
    assert 0 <= churn_risk(quiet, rhythm) <= churn_risk(silent, rhythm) < 1 or churn_risk(silent, rhythm) == 1.0
    assert churn_risk(0, rhythm) == 0


def test_churn_is_measured_against_the_contacts_own_cadence() -> None:
    weekly = cadence(first_age=70, last_age=0, active_days=11)  # active every 7 days
    assert weekly == 7
    assert churn_risk(14, weekly) == pytest.approx(0.5)
    assert churn_risk(14, cadence(300, 0, 4)) < 0.5, "a monthly buyer silent for two weeks is not at risk yet"
