"""Incentive task request and response bodies: the rule table (seed 001's 任务规则表, extended), grants, claims and
the contact-facing task centre."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from api.params import INT_MAX, StrictId

CEL = "CEL over `event` (name, properties, context, timestamp) and `contact` (id, traits)"


class PeriodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["once", "new_user", "daily", "weekly", "monthly", "window"] = "daily"
    zone: str = Field("UTC", min_length=1, max_length=64, description="IANA time zone the periods are counted in.")
    days: StrictInt | None = Field(None, ge=1, le=3650, description="new_user: days after the contact was first seen.")
    window_start: AwareDatetime | None = None
    window_end: AwareDatetime | None = None


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40)
    weight: StrictInt = Field(1, ge=0, le=10_000)
    num: StrictInt | None = Field(None, ge=1, le=INT_MAX)
    reward_count: StrictInt | None = Field(None, ge=0, le=INT_MAX)


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num: StrictInt = Field(ge=1, le=INT_MAX)
    reward: StrictInt = Field(ge=0, le=INT_MAX)


class TaskIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Like 3 items", "user_action": "like", "num": 3, "reward_count": 1, "program_id": 1,
         "period": {"kind": "daily", "zone": "Asia/Shanghai"}, "threshold": 20},
        {"name": "Big order", "user_action": "order_paid", "filter": "event.properties.amount >= 100",
         "num": 1, "reward_count": 20, "program_id": 1, "period": {"kind": "once"}, "budget": 100000},
        {"name": "7-day check-in", "kind": "streak", "user_action": "check_in", "num": 1, "reward_count": 5,
         "streak_rewards": [5, 5, 10, 10, 15, 15, 30], "program_id": 1,
         "period": {"kind": "daily", "zone": "Asia/Shanghai"}, "claim_mode": "manual",
         "claim_window_seconds": 86400},
        {"name": "First review", "user_action": "review", "num": 1, "reward_type": "coupon",
         "coupon_template_id": 3, "reward_count": 1, "period": {"kind": "once"}, "budget": 1000},
    ]})

    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    kind: Literal["simple", "streak", "ladder", "composite"] = "simple"
    user_action: str = Field("", max_length=200, description="The event name that advances the task.")
    filter: str | None = Field(None, max_length=4000, description=f"Which events count: {CEL}.")
    compute: str | None = Field(None, max_length=4000,
                                description=f"How much an event counts (default 1): {CEL}, e.g. "
                                            "`event.properties.amount / 100`.")
    num: StrictInt = Field(1, ge=1, le=INT_MAX, description="Units per completion.")
    reward_count: StrictInt = Field(0, ge=0, le=INT_MAX,
                                    description="Reward per completion: points, or coupons (at most 100).")
    reward_type: Literal["points", "coupon"] = Field("points", description="A points credit, or coupons.")
    program_id: StrictId | None = Field(None, description="points: the program the reward is credited in.")
    coupon_template_id: StrictId | None = Field(
        None, description="coupon: the coupon template issued (`reward_count` coupons per completion); it must "
                          "exist and be active.")
    period: PeriodIn = Field(default_factory=PeriodIn)
    threshold: StrictInt | None = Field(None, ge=1, le=INT_MAX, description="Completions per period.")
    lifetime_cap: StrictInt | None = Field(None, ge=1, le=INT_MAX, description="Completions per contact, ever.")
    budget: StrictInt | None = Field(None, ge=1, le=2**62, description="Total reward units; spent: paused.")
    claim_mode: Literal["auto", "manual"] = "auto"
    claim_window_seconds: StrictInt | None = Field(None, ge=60, le=366 * 86400)
    segment_id: StrictId | None = Field(None, description="Only members of this segment take part.")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    variants: list[VariantIn] = Field(default_factory=list, max_length=10)
    streak_rewards: list[Annotated[StrictInt, Field(ge=0, le=INT_MAX)]] = Field(
        default_factory=list, max_length=366, description="streak: day n of a streak earns the n-th (then again).")
    ladder: list[TierIn] = Field(default_factory=list, max_length=50)
    steps: list[str] = Field(default_factory=list, max_length=20, description="composite: event names, in order.")
    notify: list[Literal["inbox", "email", "sms", "push", "wechat", "webhook"]] | None = Field(
        None, max_length=6, description="Channels that tell the contact a reward was credited (a toast) or is waiting "
                                        "to be claimed (a popup), as a fallback chain; default `[\"inbox\"]` (the "
                                        "in-app inbox), `[]` for none.")


class TaskOut(BaseModel):
    id: int
    status: str
    version: int
    reserved: int
    budget_left: int | None
    alert: str | None
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    ended_at: datetime | None
    workflow_id: str


class ClaimIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"contact_id": 42}]})

    contact_id: StrictId


class GrantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    task_id: int
    contact_id: int
    period_key: str
    n: int
    reference: str
    reward_type: str = Field(description="points or coupon")
    program_id: int | None
    coupon_template_id: int | None
    amount: int = Field(description="Points, or coupons")
    coupon_codes: list[str] = Field(description="coupon: the codes issued (once issued), as shown to the contact",
                                    examples=[["7K3M-Q9XA-2B4F-H"]])
    status: str
    claim_deadline: datetime | None
    failure: str | None
    created_at: datetime


class TaskCentreItem(BaseModel):
    task_id: int
    name: str
    description: str
    kind: str
    period_key: str | None
    period_ends_at: datetime | None
    progress: int
    num: int
    completions: int
    threshold: int | None
    status: int = Field(description="0 initial, 1 in progress, 2 completed, 3 claimed, 4 lapsed")
    reward_count: int
    time_left_seconds: int | None
    rewards: list[GrantOut]


class TaskCentreOut(BaseModel):
    contact_id: int
    tasks: list[TaskCentreItem]
