"""Promotions, coupons, quotes and orders: request and response bodies. Amounts are integer cents."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from api.params import ID_MAX, StrictId

CENTS = 10**12
ORDER_ID = r"^[A-Za-z0-9._:-]{1,100}$"
Kind = Literal["amount_off", "tiered", "percent_off", "fixed_price", "buy_n_get_m", "gift", "free_shipping", "points"]
Name = Field(min_length=1, max_length=200)


class ScopeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: list[str] = Field(default_factory=list, max_length=200)
    skus: list[str] = Field(default_factory=list, max_length=1000)
    excluded_skus: list[str] = Field(default_factory=list, max_length=1000)


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: StrictInt = Field(ge=0, le=CENTS)
    amount: StrictInt = Field(ge=1, le=CENTS)


class PromotionDefinition(BaseModel):
    """The unified discount model: which fields a kind needs is checked by the domain (errors name the field)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "¥200 off over ¥3000", "kind": "amount_off", "threshold": 300000, "amount": 20000,
         "stacking_group": "full-reduction", "exclusivity": "group"},
        {"name": "Cases at ¥30", "kind": "fixed_price", "price": 3000, "scope": {"skus": ["case"]}},
        {"name": "Gold members 10% off, at most ¥50", "kind": "percent_off", "percent": 10, "cap": 5000,
         "condition": 'contact.traits.tier == "gold"'},
        {"name": "Buy 2 get 1 accessories", "kind": "buy_n_get_m", "buy": 2, "get": 1,
         "scope": {"categories": ["accessories"]}},
        {"name": "Pay with coins", "kind": "points", "program_id": 1, "rate_points": 100, "rate_cents": 100,
         "max_percent": 20},
    ]})

    name: str = Name
    kind: Kind
    scope: ScopeIn | None = None
    threshold: StrictInt | None = Field(None, ge=0, le=CENTS, description="Scoped subtotal (list price) needed.")
    amount: StrictInt | None = Field(None, ge=1, le=CENTS)
    repeat: bool | None = Field(None, description="amount_off: take `amount` off for every full `threshold`.")
    tiers: list[TierIn] | None = Field(None, max_length=20)
    percent: StrictInt | None = Field(None, ge=1, le=100)
    cap: StrictInt | None = Field(None, ge=1, le=CENTS)
    price: StrictInt | None = Field(None, ge=0, le=CENTS)
    buy: StrictInt | None = Field(None, ge=1, le=1000)
    get: StrictInt | None = Field(None, ge=1, le=1000)
    max_applications: StrictInt | None = Field(None, ge=1, le=1_000_000)
    gift_sku: str | None = Field(None, min_length=1, max_length=200)
    gift_value: StrictInt | None = Field(None, ge=0, le=CENTS)
    program_id: StrictInt | None = Field(None, ge=1, le=ID_MAX)
    rate_points: StrictInt | None = Field(None, ge=1, le=1_000_000)
    rate_cents: StrictInt | None = Field(None, ge=1, le=CENTS)
    max_percent: StrictInt | None = Field(None, ge=1, le=100)
    condition: str | None = Field(None, min_length=1, max_length=4000, description="CEL over cart, contact, context")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    per_user_limit: StrictInt | None = Field(None, ge=1, le=1_000_000)
    budget: StrictInt | None = Field(None, ge=1, le=CENTS, description="Cents of discount in total, never exceeded.")
    stacking_group: str | None = Field(None, min_length=1, max_length=100)
    exclusivity: Literal["stackable", "group", "exclusive"] | None = None
    priority: StrictInt | None = Field(None, ge=-1000, le=1000)
    coupon_template_id: StrictInt | None = Field(None, ge=1, le=ID_MAX,
                                                 description="Applies only through a coupon of this template.")
    channels: list[str] | None = Field(None, max_length=50)

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class PromotionIn(PromotionDefinition):
    stock: StrictInt | None = Field(None, ge=0, le=10**9, description="Orders that may use it; null: unlimited.")
    status: Literal["active", "paused"] = "active"

    def stored(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude={"stock", "status"})


class PromotionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "paused"}]})

    definition: PromotionDefinition | None = None
    status: Literal["active", "paused", "archived"] | None = None
    stock: StrictInt | None = Field(None, ge=0, le=10**9)


class PromotionOut(BaseModel):
    id: int
    name: str
    kind: str
    status: str
    definition: dict[str, Any]
    stock: int | None
    stock_left: int | None
    created_at: datetime
    updated_at: datetime


class PromotionPage(BaseModel):
    items: list[PromotionOut]
    next_after: int | None


class TemplateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "¥20 off, 30 days", "valid_days": 30, "per_contact_limit": 1, "stock": 100000},
        {"name": "Launch week", "public_code": "LAUNCH20", "valid_from": "2026-12-01T00:00:00Z",
         "valid_until": "2026-12-08T00:00:00Z"},
    ]})

    name: str = Name
    public_code: str | None = Field(None, pattern=r"^[A-Z0-9]{4,40}$",
                                    description="One shared code anyone may offer (once per order).")
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None
    valid_days: StrictInt | None = Field(None, ge=1, le=3650, description="Valid for N days from issue.")
    per_contact_limit: StrictInt | None = Field(None, ge=1, le=10_000)
    stock: StrictInt | None = Field(None, ge=0, le=10**9, description="Coupons that may be issued; null: unlimited.")


class TemplateOut(BaseModel):
    id: int
    name: str
    public_code: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    per_contact_limit: int | None
    status: str
    stock: int | None
    stock_left: int | None
    created_at: datetime


class TemplatePage(BaseModel):
    items: list[TemplateOut]
    next_after: int | None


class CodesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"count": 100000, "batch": "dec-flyer"}]})

    count: StrictInt = Field(ge=1, le=100_000, description="Codes in this batch (send several batches for more).")
    batch: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$",
                       description="Idempotency key: the same batch again returns the same codes.")


class IssueIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"template_id": 1, "contact_id": 42, "reference": "claim:campaign-7:42"}]})

    template_id: StrictId
    contact_id: StrictId
    reference: str = Field(min_length=1, max_length=200, description="Idempotency key (claim, task reward, purchase).")


class CouponOut(BaseModel):
    id: int
    template_id: int
    code: str
    contact_id: int | None
    state: str
    reference: str | None
    order_id: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    issued_at: datetime
    source: Literal["points", "task", "journey", "bulk", "issued"] = Field(
        description="Where it came from: points (bought with points, reference `redeem:{order_id}#{i}`), task (a task "
                    "reward), journey (a journey's grant node), bulk (generated unassigned), issued (through "
                    "POST /v1/coupons).")


class CouponPage(BaseModel):
    items: list[CouponOut]
    next_after: int | None = Field(None, description="Pass as `after` to get the next page; null at the end.")


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: str = Field(min_length=1, max_length=200)
    category: str = Field("", max_length=200)
    unit_price: StrictInt = Field(ge=0, le=10**9, description="Cents.")
    quantity: StrictInt = Field(ge=1, le=10_000)


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"contact_id": 42, "channel": "app", "shipping": 1000, "coupons": ["7K3M-Q9TZ-X2BD-F"], "points": 500,
         "lines": [{"sku": "phone", "category": "phones", "unit_price": 300000, "quantity": 1},
                   {"sku": "case", "category": "accessories", "unit_price": 5000, "quantity": 2}]}]})

    lines: list[LineIn] = Field(min_length=1, max_length=100)
    contact_id: StrictId | None = None
    coupons: list[str] = Field(default_factory=list, max_length=10)
    points: StrictInt = Field(0, ge=0, le=10**9, description="Points the customer wants to pay with.")
    shipping: StrictInt = Field(0, ge=0, le=10**7)
    channel: str = Field("", max_length=50)


class OrderIn(QuoteIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"order_id": "ord-2026-0001", "contact_id": 42, "shipping": 1000, "coupons": ["7K3M-Q9TZ-X2BD-F"],
         "lines": [{"sku": "phone", "category": "phones", "unit_price": 300000, "quantity": 1}]}]})

    order_id: str = Field(pattern=ORDER_ID, description="The caller's order id: the idempotency key.")
    hold_seconds: StrictInt = Field(900, ge=10, le=86_400, description="Reservations are released after this.")


class GiftOut(BaseModel):
    sku: str
    value: int


class AppliedOut(BaseModel):
    promotion_id: int
    name: str
    kind: str
    stage: str
    discount: int
    lines: list[int]
    shipping: int
    gift: GiftOut | None
    coupon_code: str | None
    points_used: int


class NotAppliedOut(BaseModel):
    promotion_id: int | None
    reason: str
    detail: str
    coupon_code: str | None
    by: list[int]


class LineQuoteOut(BaseModel):
    sku: str
    quantity: int
    amount: int
    discount: int
    total: int


class QuoteOut(BaseModel):
    subtotal: int
    shipping: int
    discount: int
    total: int
    lines: list[LineQuoteOut]
    applied: list[AppliedOut]
    not_applied: list[NotAppliedOut]
    points_used: int
    gifts: list[GiftOut]
    exhaustive: bool


class OrderOut(BaseModel):
    order_id: str
    contact_id: int | None
    status: str
    quote: QuoteOut
    subtotal: int
    discount: int
    total: int
    points_used: int
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    workflow_id: str


class OrderPage(BaseModel):
    items: list[OrderOut] = Field(description="Newest first.")
    next_before: str | None = Field(None, description="Pass as `before` for older orders; null at the end.")
