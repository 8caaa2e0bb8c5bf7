"""Computed traits: lead score with half-life decay and lifecycle stage, RFM tiers, churn risk.

Pure rules over a contact's daily activity. store/scores.py computes the same numbers set-based in SQL
for every contact and is tested against these functions; results are queryable as `scores.<name>`.
Ages are whole UTC days, as the daily aggregates are.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

STAGES = ("subscriber", "lead", "mql", "customer")


@dataclass(frozen=True)
class LeadModel:
    event_points: Mapping[str, float] = field(default_factory=lambda: {
        "$page": 1.0, "app_open": 1.0, "email_clicked": 3.0, "form_submitted": 10.0, "demo_requested": 25.0})
    trait_points: Mapping[str, float] = field(default_factory=lambda: {"email": 5.0, "phone": 5.0})
    half_life_days: float = 30.0
    lead_at: float = 10.0
    mql_at: float = 50.0
    customer_event: str = "order_paid"


@dataclass(frozen=True)
class RfmModel:
    """Breakpoints that score each of recency (days, lower is better), frequency and monetary 1–5."""

    window_days: int = 365
    recency: tuple[int, int, int, int] = (7, 30, 90, 180)
    frequency: tuple[float, float, float, float] = (2, 3, 5, 10)
    monetary: tuple[float, float, float, float] = (50, 200, 500, 2000)


@dataclass(frozen=True)
class DailyCount:
    event: str
    age_days: int  # 0 = today
    count: int


def decayed(points: float, age_days: int, half_life_days: float) -> float:
    return float(points * 0.5 ** (max(age_days, 0) / half_life_days))


def lead_score(model: LeadModel, activity: Iterable[DailyCount], present_traits: Iterable[str]) -> float:
    """Points per event, halved every `half_life_days`, plus points for traits the contact has."""
    events = sum(decayed(model.event_points.get(a.event, 0.0) * a.count, a.age_days, model.half_life_days)
                 for a in activity)
    traits = sum(model.trait_points.get(t, 0.0) for t in set(present_traits))
    return round(events + traits, 6)


def lifecycle_stage(model: LeadModel, score: float, is_customer: bool) -> str:
    if is_customer:
        return "customer"
    if score >= model.mql_at:
        return "mql"
    if score >= model.lead_at:
        return "lead"
    return "subscriber"


def band(value: float, breakpoints: tuple[float, ...], *, lower_is_better: bool = False) -> int:
    """1–5: how many breakpoints `value` reaches (or stays under, when lower is better), plus one."""
    if lower_is_better:
        return 5 - sum(1 for b in breakpoints if value > b)
    return 1 + sum(1 for b in breakpoints if value >= b)


def rfm_tier(r: int, f: int, m: int) -> str:
    if r >= 4 and f >= 4:
        return "champions"
    if r >= 4 and f == 1:
        return "new"
    if r >= 3 and f >= 3:
        return "loyal"
    if r <= 2 and (f >= 3 or m >= 4):
        return "at_risk"
    if r <= 2:
        return "hibernating"
    return "promising"


def rfm(model: RfmModel, recency_days: int | None, frequency: int, monetary: float) -> str | None:
    """The tier of a buyer; None for contacts without a purchase in the window."""
    if recency_days is None or frequency == 0:
        return None
    return rfm_tier(band(recency_days, model.recency, lower_is_better=True), band(frequency, model.frequency),
                    band(monetary, model.monetary))


DEFAULT_CADENCE_DAYS = 30.0


def cadence(first_age: int, last_age: int, active_days: int) -> float:
    """The contact's own rhythm: mean days between active days (a default until there are two)."""
    if active_days < 2:
        return DEFAULT_CADENCE_DAYS
    return max((first_age - last_age) / (active_days - 1), 1.0)


def churn_risk(days_since_last: int, cadence_days: float) -> float:
    """0 just after activity; 0.5 at twice the contact's usual gap; approaching 1 as silence grows."""
    return round(1 - math.pow(0.5, max(days_since_last, 0) / (2 * cadence_days)), 6)
