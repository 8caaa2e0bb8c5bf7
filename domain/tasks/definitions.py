"""A task definition (seed 001's 任务规则表, extended) as a validated value, and how it scores a batch of events.

Validation errors name the field (`filter: CEL syntax error …`), so the API answers 422 with it. Filter and
compute are CEL over `event` (name, properties, context, timestamp) and `contact` (traits); they are compiled once
per process (`domain.rules.compile_expression` caches) and evaluated per batch, never per SQL row.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.errors import DomainError
from domain.rules import InvalidExpression, compile_expression, value_of
from domain.tasks.notices import DEFAULT_CHAIN, check_chain
from domain.tasks.periods import Period, PeriodKind
from domain.tasks.progress import Rule, TaskKind, assign_variant

MAX_AMOUNT = 2**31 - 1


class InvalidTask(DomainError):
    title = "Invalid task definition"


class ClaimMode(StrEnum):
    AUTO = "auto"
    MANUAL = "manual"


class RewardType(StrEnum):
    """What a completion grants. `points`: a credit in the points program `program_id`; `coupon`: coupons of the
    template `coupon_template_id` (`reward_count` of them per completion), issued by the saga's external-benefit
    step (no ledger posting)."""

    POINTS = "points"
    COUPON = "coupon"


MAX_COUPONS = 100  # coupons one completion may grant


@dataclass(frozen=True)
class Variant:
    name: str
    weight: int = 1
    num: int | None = None            # overrides of the task's own values
    reward_count: int | None = None


@dataclass(frozen=True)
class TaskDefinition:
    name: str
    user_action: str
    num: int
    reward_count: int
    program_id: int | None
    period: Period
    kind: TaskKind = TaskKind.SIMPLE
    description: str = ""
    filter: str | None = None
    compute: str | None = None
    reward_type: RewardType = RewardType.POINTS
    coupon_template_id: int | None = None
    threshold: int | None = None
    lifetime_cap: int | None = None
    budget: int | None = None
    claim_mode: ClaimMode = ClaimMode.AUTO
    claim_window_seconds: int | None = None
    segment_id: int | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    variants: tuple[Variant, ...] = ()
    streak_rewards: tuple[int, ...] = ()
    ladder: tuple[tuple[int, int], ...] = ()
    steps: tuple[str, ...] = ()
    notify: tuple[str, ...] = DEFAULT_CHAIN  # channels that tell the contact (domain/tasks/notices.py); () none
    extra: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TaskDefinition:
        for name, value in (("filter", self.filter), ("compute", self.compute)):
            if value is not None:
                try:
                    compile_expression(value)
                except InvalidExpression as exc:
                    raise InvalidTask(f"{name}: {exc}") from exc
        self.period.validate()
        if not 1 <= self.num <= MAX_AMOUNT:
            raise InvalidTask("num: must be between 1 and 2147483647")
        if not 0 <= self.reward_count <= MAX_AMOUNT:
            raise InvalidTask("reward_count: must be between 0 and 2147483647")
        if self.reward_type is RewardType.POINTS:
            if self.program_id is None:
                raise InvalidTask("program_id: a points reward needs the program it is credited in")
            if self.coupon_template_id is not None:
                raise InvalidTask("coupon_template_id: only a coupon reward names a coupon template")
        else:
            if self.coupon_template_id is None:
                raise InvalidTask("coupon_template_id: a coupon reward needs the coupon template it issues")
            if self.program_id is not None:
                raise InvalidTask("program_id: a coupon reward is not credited in a points program")
            most = max([self.reward_count, *self.streak_rewards, *(r for _, r in self.ladder),
                        *(v.reward_count or 0 for v in self.variants)])
            if most > MAX_COUPONS:
                raise InvalidTask(f"reward_count: at most {MAX_COUPONS} coupons per completion")
        if self.threshold is not None and self.threshold < 1:
            raise InvalidTask("threshold: must be at least 1 (or null for no limit)")
        if self.lifetime_cap is not None and self.lifetime_cap < 1:
            raise InvalidTask("lifetime_cap: must be at least 1 (or null for no limit)")
        if self.claim_mode is ClaimMode.MANUAL and not self.claim_window_seconds:
            raise InvalidTask("claim_window_seconds: a manual claim task needs a claim window")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise InvalidTask("ends_at: must be after starts_at")
        if self.kind is TaskKind.STREAK:
            if self.period.kind not in (PeriodKind.DAILY, PeriodKind.WEEKLY, PeriodKind.MONTHLY):
                raise InvalidTask("period.kind: a streak counts consecutive daily, weekly or monthly periods")
            if any(r < 0 for r in self.streak_rewards):
                raise InvalidTask("streak_rewards: rewards cannot be negative")
        if self.kind is TaskKind.LADDER:
            needs = [n for n, _ in self.ladder]
            if not self.ladder or needs != sorted(set(needs)) or needs[0] < 1:
                raise InvalidTask("ladder: tiers need strictly ascending positive num values")
        if self.kind is TaskKind.COMPOSITE and len(self.steps) < 2:
            raise InvalidTask("steps: a composite task names at least two actions, in order")
        if self.kind is not TaskKind.COMPOSITE and self.steps:
            raise InvalidTask("steps: only a composite task has steps")
        try:
            check_chain(self.notify)
        except ValueError as exc:
            raise InvalidTask(f"notify: {exc}") from exc
        if self.variants:
            if sum(v.weight for v in self.variants) <= 0 or any(v.weight < 0 for v in self.variants):
                raise InvalidTask("variants: weights must be non-negative and not all zero")
            if len({v.name for v in self.variants}) != len(self.variants):
                raise InvalidTask("variants: names must be unique")
        return self

    @property
    def keeps_participants(self) -> bool:
        """Whether state across periods matters (a lifetime cap, a streak, a variant to remember); without it the
        engine touches only the period's progress row."""
        return self.lifetime_cap is not None or self.kind is TaskKind.STREAK or bool(self.variants)

    @property
    def actions(self) -> tuple[str, ...]:
        """The event names this task listens to."""
        return tuple(dict.fromkeys(self.steps)) if self.kind is TaskKind.COMPOSITE else (self.user_action,)

    def variant_of(self, task_id: int, contact_id: int) -> int | None:
        if not self.variants:
            return None
        return assign_variant(task_id, contact_id, [v.weight for v in self.variants])

    def rule(self, variant: int | None = None) -> Rule:
        v = self.variants[variant] if variant is not None and self.variants else None
        return Rule(kind=self.kind, num=(v.num if v and v.num else self.num),
                    reward_count=(v.reward_count if v and v.reward_count is not None else self.reward_count),
                    threshold=self.threshold, lifetime_cap=self.lifetime_cap, streak_rewards=self.streak_rewards,
                    ladder=self.ladder, steps=self.steps)

    def is_live(self, at: datetime) -> bool:
        return (self.starts_at is None or self.starts_at <= at) and (self.ends_at is None or at < self.ends_at)


def increments(definition: TaskDefinition, variables: Sequence[dict[str, Any]]) -> list[int]:
    """For each event (its CEL variables), how much it advances the task: 0 when the filter says no or compute
    gives nothing positive. A missing field or a type mismatch is a no, never an error."""
    filt = compile_expression(definition.filter) if definition.filter else None
    comp = compile_expression(definition.compute) if definition.compute else None
    out: list[int] = []
    for v in variables:
        if filt is not None and value_of(filt, v) is not True:
            out.append(0)
        else:
            out.append(1 if comp is None else _as_increment(value_of(comp, v)))
    return out


_REFERENCE = re.compile(r"\b(event|contact)\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*))?")


def referenced(expressions: Sequence[str | None]) -> dict[str, frozenset[str] | None]:
    """Which fields of `event` and `contact` the expressions can read: {"event": {"properties"}, …}; None for all
    of a variable's fields (it is used whole, e.g. `event["properties"]` or `size(event)`). Building only these
    per event is what keeps CEL cheap; over-including (a name inside a string literal) is harmless."""
    found: dict[str, set[str] | None] = {}
    for expression in expressions:
        for m in _REFERENCE.finditer(expression or ""):
            name, field_ = m[1], m[3]
            if field_ is None:
                found[name] = None
            elif name not in found:
                found[name] = {field_}
            elif (known := found[name]) is not None:
                known.add(field_)
    return {k: None if v is None else frozenset(v) for k, v in found.items()}


def as_increment(value: Any) -> int:
    """A compute expression's value as an increment: positive integers (floats truncated), anything else 0."""
    return _as_increment(value)


def _as_increment(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return max(0, min(value, MAX_AMOUNT))
    if isinstance(value, float) and math.isfinite(value):
        return max(0, min(int(value), MAX_AMOUNT))
    return 0


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _id(value: Any) -> int | None:
    return None if value is None else int(value)


def from_mapping(data: dict[str, Any]) -> TaskDefinition:
    """A definition from its JSON form (the API body, the stored row); validated."""
    p = data.get("period") or {}
    if isinstance(data.get("notify"), str):
        raise InvalidTask('notify: a list of channels, e.g. ["push", "inbox"]')
    try:
        period = Period(PeriodKind(p.get("kind", "daily")), p.get("zone") or "UTC", p.get("days"),
                        _when(p.get("window_start")), _when(p.get("window_end")))
        definition = TaskDefinition(
            name=data["name"], user_action=data.get("user_action") or "", num=int(data.get("num", 1)),
            reward_count=int(data.get("reward_count", 0)), program_id=_id(data.get("program_id")), period=period,
            kind=TaskKind(data.get("kind", "simple")), description=data.get("description") or "",
            filter=data.get("filter"), compute=data.get("compute"),
            reward_type=RewardType(data.get("reward_type", "points")),
            coupon_template_id=_id(data.get("coupon_template_id")), threshold=data.get("threshold"),
            lifetime_cap=data.get("lifetime_cap"), budget=data.get("budget"),
            claim_mode=ClaimMode(data.get("claim_mode", "auto")),
            claim_window_seconds=data.get("claim_window_seconds"), segment_id=data.get("segment_id"),
            starts_at=_when(data.get("starts_at")), ends_at=_when(data.get("ends_at")),
            variants=tuple(Variant(v["name"], int(v.get("weight", 1)), v.get("num"), v.get("reward_count"))
                           for v in data.get("variants") or ()),
            streak_rewards=tuple(int(x) for x in data.get("streak_rewards") or ()),
            ladder=tuple((int(t["num"]), int(t["reward"])) for t in data.get("ladder") or ()),
            steps=tuple(data.get("steps") or ()),
            notify=tuple(DEFAULT_CHAIN if data.get("notify") is None else data["notify"]),
            extra=dict(data.get("extra") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidTask(f"definition: {exc}") from exc
    if definition.kind is not TaskKind.COMPOSITE and not definition.user_action:
        raise InvalidTask("user_action: name the event that advances the task")
    return definition.validate()


def to_mapping(d: TaskDefinition) -> dict[str, Any]:
    """The JSON form of a definition (what `from_mapping` reads back)."""
    def iso(x: datetime | None) -> str | None:
        return x.isoformat() if x else None

    return {
        "name": d.name, "description": d.description, "kind": d.kind.value, "user_action": d.user_action,
        "filter": d.filter, "compute": d.compute, "num": d.num, "reward_count": d.reward_count,
        "reward_type": d.reward_type.value, "program_id": d.program_id,
        "coupon_template_id": d.coupon_template_id,
        "period": {"kind": d.period.kind.value, "zone": d.period.zone, "days": d.period.days,
                   "window_start": iso(d.period.window_start), "window_end": iso(d.period.window_end)},
        "threshold": d.threshold, "lifetime_cap": d.lifetime_cap, "budget": d.budget,
        "claim_mode": d.claim_mode.value, "claim_window_seconds": d.claim_window_seconds,
        "segment_id": d.segment_id, "starts_at": iso(d.starts_at), "ends_at": iso(d.ends_at),
        "variants": [{"name": v.name, "weight": v.weight, "num": v.num, "reward_count": v.reward_count}
                     for v in d.variants],
        "streak_rewards": list(d.streak_rewards), "ladder": [{"num": n, "reward": r} for n, r in d.ladder],
        "steps": list(d.steps), "notify": list(d.notify), "extra": d.extra,
    }
