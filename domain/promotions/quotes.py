"""What a quote is: the final price, every promotion applied with its per-line discount, and every promotion that
was considered but did not apply, with a machine-readable reason (pricing.py computes it)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    THRESHOLD_NOT_MET = "threshold_not_met"
    EXCLUDED_BY = "excluded_by"
    LIMIT_REACHED = "limit_reached"
    BUDGET_EXHAUSTED = "budget_exhausted"
    OUT_OF_STOCK = "out_of_stock"
    EXPIRED = "expired"
    NOT_STARTED = "not_started"
    CONDITION_FALSE = "condition_false"
    NOT_IN_SCOPE = "not_in_scope"
    WRONG_CHANNEL = "wrong_channel"
    NO_SAVING = "nosaving"
    INSUFFICIENT_POINTS = "insufficient_points"
    COUPON_INVALID = "coupon_invalid"
    COUPON_NOT_YOURS = "coupon_not_yours"
    COUPON_USED = "coupon_used"
    COUPON_REVOKED = "coupon_revoked"
    COUPON_RESERVED = "coupon_reserved"
    COUPON_DUPLICATE = "coupon_duplicate"


@dataclass(frozen=True)
class Gift:
    sku: str
    value: int


@dataclass(frozen=True)
class Applied:
    promotion_id: int
    name: str
    kind: str
    stage: str
    discount: int  # cents off the price: sum(lines) + shipping
    lines: tuple[int, ...]  # per cart line, in the order the cart listed them
    shipping: int = 0
    gift: Gift | None = None
    coupon_code: str | None = None
    points_used: int = 0


@dataclass(frozen=True)
class NotApplied:
    promotion_id: int | None
    reason: Reason
    detail: str
    coupon_code: str | None = None
    by: tuple[int, ...] = ()


@dataclass(frozen=True)
class LineQuote:
    sku: str
    quantity: int
    amount: int
    discount: int
    total: int


@dataclass(frozen=True)
class Quote:
    subtotal: int
    shipping: int
    discount: int
    total: int
    lines: tuple[LineQuote, ...]
    applied: tuple[Applied, ...]
    not_applied: tuple[NotApplied, ...]
    points_used: int = 0
    gifts: tuple[Gift, ...] = ()
    exhaustive: bool = True

    @property
    def coupon_codes(self) -> tuple[str, ...]:
        return tuple(a.coupon_code for a in self.applied if a.coupon_code)
