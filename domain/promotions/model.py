"""The unified discount model (seed 002): every kind of promotion is one `Promotion` value — a kind with its
parameters, a scope, a condition, a schedule, limits, a stacking group, a priority and an exclusivity — built
from its stored JSON definition by `promotion_from_json`, which names the offending field when it refuses.

Amounts are integer cents. A promotion whose `coupon_template_id` is set applies only through a coupon of that
template (the coupons stage); the others apply by themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from domain.errors import DomainError
from domain.rules import InvalidExpression, compile_expression

MAX_CENTS = 10**12
MAX_COUNT = 10**6


class InvalidPromotion(DomainError):
    title = "Invalid promotion"

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


class Kind(StrEnum):
    AMOUNT_OFF = "amount_off"  # 满减: `amount` off when the scoped subtotal reaches `threshold` (optionally per step)
    TIERED = "tiered"  # the highest tier reached: [{threshold, amount}, ...]
    PERCENT_OFF = "percent_off"  # `percent` off the scoped subtotal, at most `cap`
    FIXED_PRICE = "fixed_price"  # 直降: scoped items sell at `price` each
    BUY_N_GET_M = "buy_n_get_m"  # in every group of buy + get scoped units, the `get` cheapest are free
    GIFT = "gift"  # a gift item (`gift_sku`, worth `gift_value`) above `threshold`
    FREE_SHIPPING = "free_shipping"  # the shipping fee waived above `threshold`
    POINTS = "points"  # points as cash: `rate_points` points pay `rate_cents`, at most `max_percent` of the total


class Stage(StrEnum):
    """The documented order of application: item-level, order-level, coupons, points."""

    ITEM = "item"
    ORDER = "order"
    COUPON = "coupon"
    POINTS = "points"


STAGE_ORDER = {Stage.ITEM: 0, Stage.ORDER: 1, Stage.COUPON: 2, Stage.POINTS: 3}
ITEM_KINDS = frozenset({Kind.FIXED_PRICE, Kind.BUY_N_GET_M})


class Exclusivity(StrEnum):
    STACKABLE = "stackable"  # combines with everything not exclusive
    GROUP = "group"  # at most one promotion of its stacking group, and none stackable of that group beside it
    EXCLUSIVE = "exclusive"  # alone (points as cash still apply after it)


@dataclass(frozen=True)
class Scope:
    """Which cart lines a promotion looks at: all, or these categories and/or SKUs, minus the excluded SKUs."""

    categories: frozenset[str] = frozenset()
    skus: frozenset[str] = frozenset()
    excluded_skus: frozenset[str] = frozenset()

    def covers(self, sku: str, category: str) -> bool:
        if sku in self.excluded_skus:
            return False
        if not self.categories and not self.skus:
            return True
        return sku in self.skus or category in self.categories


@dataclass(frozen=True)
class Tier:
    threshold: int
    amount: int


@dataclass(frozen=True)
class Promotion:
    id: int
    name: str
    kind: Kind
    scope: Scope = Scope()
    threshold: int = 0  # met by the scoped subtotal at list price (see pricing.py: why list price)
    amount: int = 0
    repeat: bool = False  # amount_off: `amount` off for every full `threshold` (每满减), at most `max_applications`
    tiers: tuple[Tier, ...] = ()
    percent: int = 0
    cap: int | None = None
    price: int = 0
    buy: int = 0
    get: int = 0
    max_applications: int | None = None  # per order: repeats of amount_off/buy_n_get_m, units at a fixed price
    gift_sku: str = ""
    gift_value: int = 0
    rate_points: int = 1
    rate_cents: int = 1
    max_percent: int = 100
    program_id: int | None = None  # points: the ledger program whose points pay
    condition: str | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    per_user_limit: int | None = None  # orders per contact; the caller passes how many the contact used
    budget: int | None = None  # cents of discount in total; the caller passes what was spent
    stacking_group: str | None = None
    exclusivity: Exclusivity = Exclusivity.STACKABLE
    priority: int = 0
    coupon_template_id: int | None = None
    channels: frozenset[str] = frozenset()

    @property
    def stage(self) -> Stage:
        if self.kind is Kind.POINTS:
            return Stage.POINTS
        if self.coupon_template_id is not None:
            return Stage.COUPON
        return Stage.ITEM if self.kind in ITEM_KINDS else Stage.ORDER

    def rank(self) -> tuple[int, int]:
        """Deterministic order within a stage and for ties: higher priority first, then lower id."""
        return (-self.priority, self.id)


def _int(data: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int) -> int:
    value = data.get(name, default)
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPromotion(name, "must be an integer")
    if not lo <= value <= hi:
        raise InvalidPromotion(name, f"must be between {lo} and {hi}")
    return value


def _opt_int(data: Mapping[str, Any], name: str, lo: int, hi: int) -> int | None:
    return None if data.get(name) is None else _int(data, name, None, lo, hi)


def _strings(data: Mapping[str, Any], name: str) -> frozenset[str]:
    value = data.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 200 for v in value):
        raise InvalidPromotion(name, "must be a list of non-empty strings")
    return frozenset(value)


def _time(data: Mapping[str, Any], name: str) -> datetime | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidPromotion(name, "must be an ISO 8601 date-time") from exc
    else:
        raise InvalidPromotion(name, "must be an ISO 8601 date-time")
    if parsed.tzinfo is None:
        raise InvalidPromotion(name, "must carry a time zone offset")
    return parsed


def promotion_from_json(promotion_id: int, data: Mapping[str, Any]) -> Promotion:
    """Validate a stored or submitted definition; InvalidPromotion names the field."""
    try:
        kind = Kind(str(data.get("kind")))
    except ValueError as exc:
        raise InvalidPromotion("kind", f"must be one of {', '.join(k.value for k in Kind)}") from exc
    name = data.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise InvalidPromotion("name", "must be a non-empty string of at most 200 characters")
    scope_data = data.get("scope") or {}
    if not isinstance(scope_data, Mapping):
        raise InvalidPromotion("scope", "must be an object")
    scope = Scope(_strings(scope_data, "categories"), _strings(scope_data, "skus"),
                  _strings(scope_data, "excluded_skus"))
    values: dict[str, Any] = {"threshold": _int(data, "threshold", 0, 0, MAX_CENTS)}
    if kind is Kind.AMOUNT_OFF:
        values["amount"] = _int(data, "amount", None, 1, MAX_CENTS)
        values["repeat"] = bool(data.get("repeat", False))
        if values["repeat"] and values["threshold"] < 1:
            raise InvalidPromotion("threshold", "must be at least 1 when `repeat` is set")
    elif kind is Kind.TIERED:
        raw = data.get("tiers")
        if not isinstance(raw, list) or not 0 < len(raw) <= 20:
            raise InvalidPromotion("tiers", "must be a list of 1 to 20 {threshold, amount} objects")
        tiers = []
        for i, tier in enumerate(raw):
            if not isinstance(tier, Mapping):
                raise InvalidPromotion(f"tiers[{i}]", "must be an object with threshold and amount")
            try:
                tiers.append(Tier(_int(tier, "threshold", None, 0, MAX_CENTS),
                                  _int(tier, "amount", None, 1, MAX_CENTS)))
            except InvalidPromotion as exc:
                raise InvalidPromotion(f"tiers[{i}].{exc.field}", str(exc).split(": ", 1)[1]) from exc
            if i and (tiers[i].threshold <= tiers[i - 1].threshold or tiers[i].amount < tiers[i - 1].amount):
                raise InvalidPromotion(f"tiers[{i}]", "thresholds must rise and amounts must not fall")
        values["tiers"] = tuple(tiers)
    elif kind is Kind.PERCENT_OFF:
        values["percent"] = _int(data, "percent", None, 1, 100)
        values["cap"] = _opt_int(data, "cap", 1, MAX_CENTS)
    elif kind is Kind.FIXED_PRICE:
        values["price"] = _int(data, "price", None, 0, MAX_CENTS)
    elif kind is Kind.BUY_N_GET_M:
        values["buy"] = _int(data, "buy", None, 1, 1000)
        values["get"] = _int(data, "get", None, 1, 1000)
    elif kind is Kind.GIFT:
        sku = data.get("gift_sku")
        if not isinstance(sku, str) or not 0 < len(sku) <= 200:
            raise InvalidPromotion("gift_sku", "must be a non-empty string")
        values["gift_sku"] = sku
        values["gift_value"] = _int(data, "gift_value", 0, 0, MAX_CENTS)
    elif kind is Kind.POINTS:
        values["rate_points"] = _int(data, "rate_points", 1, 1, MAX_COUNT)
        values["rate_cents"] = _int(data, "rate_cents", 1, 1, MAX_CENTS)
        values["max_percent"] = _int(data, "max_percent", 100, 1, 100)
        values["program_id"] = _int(data, "program_id", None, 1, 2**63 - 1)
    values["max_applications"] = _opt_int(data, "max_applications", 1, MAX_COUNT)
    condition = data.get("condition")
    if condition is not None:
        if not isinstance(condition, str):
            raise InvalidPromotion("condition", "must be a CEL expression string")
        try:
            compile_expression(condition)
        except InvalidExpression as exc:
            raise InvalidPromotion("condition", str(exc)) from exc
    starts_at, ends_at = _time(data, "starts_at"), _time(data, "ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        raise InvalidPromotion("ends_at", "must be after starts_at")
    group = data.get("stacking_group")
    if group is not None and (not isinstance(group, str) or not 0 < len(group) <= 100):
        raise InvalidPromotion("stacking_group", "must be a non-empty string of at most 100 characters")
    try:
        exclusivity = Exclusivity(data.get("exclusivity", "stackable"))
    except ValueError as exc:
        raise InvalidPromotion("exclusivity", "must be stackable, group or exclusive") from exc
    if exclusivity is Exclusivity.GROUP and group is None:
        raise InvalidPromotion("stacking_group", "is required when exclusivity is `group`")
    return Promotion(
        id=promotion_id, name=name, kind=kind, scope=scope, condition=condition, starts_at=starts_at,
        ends_at=ends_at, per_user_limit=_opt_int(data, "per_user_limit", 1, MAX_COUNT),
        budget=_opt_int(data, "budget", 1, MAX_CENTS), stacking_group=group, exclusivity=exclusivity,
        priority=_int(data, "priority", 0, -1000, 1000),
        coupon_template_id=_opt_int(data, "coupon_template_id", 1, 2**63 - 1),
        channels=_strings(data, "channels"), **values)


# ---- the inputs of a quote ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    sku: str
    category: str
    unit_price: int
    quantity: int

    @property
    def amount(self) -> int:
        return self.unit_price * self.quantity


@dataclass(frozen=True)
class Contact:
    id: int | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    segments: frozenset[int] = frozenset()
    is_new: bool = False
    first_order: bool = False


@dataclass(frozen=True)
class Usage:
    """Facts about one promotion the caller looked up: the engine itself never reads anything."""

    used_by_contact: int = 0  # orders of this contact that used it
    budget_spent: int = 0
    stock_left: int | None = None  # None: no stock counted


@dataclass(frozen=True)
class OfferedCoupon:
    """A code the customer offered, as the caller resolved it (template None: no such code)."""

    code: str
    template_id: int | None = None
    state: str = "issued"
    contact_id: int | None = None  # None: a shared public code
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    held_by: str | None = None  # the order holding a reserved coupon


@dataclass(frozen=True)
class Points:
    requested: int = 0
    balance: int = 0


@dataclass(frozen=True)
class Cart:
    lines: tuple[Line, ...]
    shipping: int = 0
    channel: str = ""
    now: datetime | None = None
    order_id: str | None = None  # an order being confirmed: coupons it holds count as usable
