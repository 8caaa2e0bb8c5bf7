"""The pricing engine: a cart, the active promotions, the offered coupons and points in; the best valid combination
for the customer out, with every discount allocated to lines in integer cents and every promotion that did not
apply explained.

Order of application (each stage sees the amounts the previous ones left): item-level (fixed price, buy N get M),
order-level (amount off, tiered, percent off, gift, free shipping), coupons, then points as cash. Within a stage,
higher priority first, then lower id.

Thresholds are met by the scoped subtotal at *list* price. Every discount is then monotone — a promotion added
can lower what later ones take but never raise the total — so the best combination is always a maximal one: the
search only chooses among mutually exclusive alternatives (one exclusive promotion alone; per stacking group,
one `group` promotion or the group's stackable ones) and includes everything compatible with the choice.
It is exhaustive while there are at most `EXHAUSTIVE_LIMIT` combinations, greedy with a bound above that
(search.py). Ties between combinations: the lower total, then the larger non-cash benefit (gifts), then the
combination whose promotions come first in the order of application. Line order never matters: lines are priced
in a canonical order.

The engine is pure: usage counts, budget spent and stock left are facts the caller passes in (`Usage`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.promotions.allocation import allocate
from domain.promotions.index import RuleIndex
from domain.promotions.model import (
    STAGE_ORDER,
    Cart,
    Contact,
    Exclusivity,
    Kind,
    Line,
    OfferedCoupon,
    Points,
    Promotion,
    Usage,
)
from domain.promotions.search import EXHAUSTIVE_LIMIT, Candidate, Memo, best_combination, free_units, memo_step
from domain.rules import evaluate

ANONYMOUS = Contact()
NO_POINTS = Points()


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


@dataclass
class _Outcome:
    total: int
    benefit: int
    key: tuple[int, ...]
    applied: list[Applied] = field(default_factory=list)
    zero: list[Candidate] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    points_used: int = 0
    before_points: int = 0


def _canonical(lines: Sequence[Line]) -> list[int]:
    return sorted(range(len(lines)), key=lambda i: (lines[i].sku, lines[i].category, lines[i].unit_price,
                                                    lines[i].quantity, i))


def variables(cart: Cart, contact: Contact) -> dict[str, Any]:
    """What a promotion's CEL condition sees: `cart`, `contact` and `context`."""
    return {
        "cart": {"subtotal": sum(line.amount for line in cart.lines),
                 "quantity": sum(line.quantity for line in cart.lines),
                 "skus": sorted({line.sku for line in cart.lines}),
                 "categories": sorted({line.category for line in cart.lines}), "shipping": cart.shipping},
        "contact": {"id": contact.id or 0, "traits": dict(contact.traits), "segments": sorted(contact.segments),
                    "is_new": contact.is_new, "first_order": contact.first_order},
        "context": {"channel": cart.channel, "now": cart.now.isoformat() if cart.now else "",
                    "hour": cart.now.hour if cart.now else 0},
    }


def _coupon_problem(coupon: OfferedCoupon, cart: Cart, contact: Contact) -> tuple[Reason, str] | None:
    if coupon.template_id is None:
        return Reason.COUPON_INVALID, "no coupon has this code"
    if coupon.contact_id is not None and coupon.contact_id != contact.id:
        return Reason.COUPON_NOT_YOURS, "this coupon was issued to someone else"
    if coupon.state == "reserved" and (cart.order_id is None or coupon.held_by != cart.order_id):
        return Reason.COUPON_RESERVED, "this coupon is held by another order"
    if coupon.state == "redeemed":
        return Reason.COUPON_USED, "this coupon was already used"
    if coupon.state == "revoked":
        return Reason.COUPON_REVOKED, "this coupon was revoked"
    if coupon.state == "expired" or (cart.now and coupon.valid_until and cart.now >= coupon.valid_until):
        return Reason.EXPIRED, f"this coupon expired at {coupon.valid_until.isoformat() if coupon.valid_until else ''}"
    if cart.now and coupon.valid_from and cart.now < coupon.valid_from:
        return Reason.NOT_STARTED, f"this coupon is valid from {coupon.valid_from.isoformat()}"
    return None


def _scoped(promotion: Promotion, lines: Sequence[Line], by_category: dict[str, list[int]],
            by_sku: dict[str, list[int]]) -> tuple[int, ...]:
    """The canonical positions of the lines a promotion's scope covers, through the cart's indexes (a promotion
    on categories the cart does not hold costs a set lookup)."""
    scope = promotion.scope
    if not scope.categories and not scope.skus:
        found: Sequence[int] = range(len(lines))
    else:
        hits = {i for c in scope.categories if c in by_category for i in by_category[c]}
        hits.update(i for sku in scope.skus if sku in by_sku for i in by_sku[sku])
        found = sorted(hits)
    if scope.excluded_skus:
        return tuple(i for i in found if lines[i].sku not in scope.excluded_skus)
    return tuple(found)


def _eligibility(promotion: Promotion, cart: Cart, lines: Sequence[Line], idx: tuple[int, ...], list_base: int,
                 usage: Usage, cel_vars: dict[str, Any], points: Points,
                 conditions: dict[str, bool]) -> tuple[Reason, str] | None:
    now = cart.now
    if promotion.channels and cart.channel not in promotion.channels:
        return Reason.WRONG_CHANNEL, f"only on channel(s) {', '.join(sorted(promotion.channels))}"
    if now and promotion.starts_at and now < promotion.starts_at:
        return Reason.NOT_STARTED, f"starts at {promotion.starts_at.isoformat()}"
    if now and promotion.ends_at and now >= promotion.ends_at:
        return Reason.EXPIRED, f"ended at {promotion.ends_at.isoformat()}"
    if promotion.per_user_limit is not None and usage.used_by_contact >= promotion.per_user_limit:
        return Reason.LIMIT_REACHED, f"limited to {promotion.per_user_limit} order(s) per customer"
    if promotion.budget is not None and usage.budget_spent >= promotion.budget:
        return Reason.BUDGET_EXHAUSTED, "its budget is spent"
    if usage.stock_left is not None and usage.stock_left <= 0:
        return Reason.OUT_OF_STOCK, "no stock left"
    if promotion.kind is Kind.POINTS:
        if points.balance < points.requested:
            return Reason.INSUFFICIENT_POINTS, f"{points.requested} points requested, {points.balance} available"
    elif not idx:
        return Reason.NOT_IN_SCOPE, "no cart line is in its scope"
    if promotion.condition:
        holds = conditions.get(promotion.condition)
        if holds is None:
            holds = conditions[promotion.condition] = evaluate(promotion.condition, cel_vars)
    if promotion.condition and not holds:
        return Reason.CONDITION_FALSE, "its condition is false for this cart and customer"
    if promotion.kind is Kind.TIERED:
        lowest = promotion.tiers[0].threshold
        if list_base < lowest:
            return Reason.THRESHOLD_NOT_MET, f"the lowest tier needs {lowest}, the eligible items come to {list_base}"
    elif promotion.kind is Kind.BUY_N_GET_M:
        need = promotion.buy + promotion.get
        have = sum(lines[i].quantity for i in idx)
        if have < need:
            return Reason.THRESHOLD_NOT_MET, f"needs {need} eligible units, the cart has {have}"
    elif promotion.kind is not Kind.POINTS and list_base < promotion.threshold:
        return Reason.THRESHOLD_NOT_MET, f"needs {promotion.threshold}, the eligible items come to {list_base}"
    return None


def _evaluate(chosen: Sequence[Candidate], points_candidates: Sequence[Candidate], lines: Sequence[Line],
              cart: Cart, points: Points, listed: Sequence[int], memo: Memo) -> _Outcome:
    """The chosen combination in full: every applied promotion with its per-line discount, then points. `lines` are
    in canonical order; `listed[i]` is where canonical line i sits in the cart as the customer listed it, which is
    the order of every per-line tuple of the outcome."""
    amounts = [line.amount for line in lines]
    shipping = cart.shipping
    ordered = sorted(chosen, key=lambda c: c.order)
    outcome = _Outcome(0, 0, tuple(c.order for c in ordered))
    size = len(lines)
    for c in ordered:
        p = c.promotion
        sparse, ship = memo_step(c, lines, amounts, shipping, memo)  # mostly priced by the search already
        gift = Gift(p.gift_sku, p.gift_value) if p.kind is Kind.GIFT else None
        if gift is not None:
            outcome.benefit += p.gift_value
        total = sum(sparse) + ship
        if total == 0 and gift is None:
            outcome.zero.append(c)
            continue
        per_line = [0] * size
        for i, d in zip(c.idx, sparse, strict=True):
            per_line[listed[i]] = d
            amounts[i] -= d
        shipping -= ship
        outcome.applied.append(Applied(p.id, p.name, p.kind.value, p.stage.value, total, tuple(per_line), ship, gift,
                                       c.coupon_code))
    best: tuple[int, list[int], Applied] | None = None
    left = outcome.before_points = sum(amounts) + shipping
    for c in sorted(points_candidates, key=lambda c: c.promotion.rank()):
        p = c.promotion
        cap = left * p.max_percent // 100
        if c.budget_left is not None:
            cap = min(cap, c.budget_left)
        blocks = min(min(points.requested, points.balance) // p.rate_points, cap // p.rate_cents)
        cents = blocks * p.rate_cents
        if cents > 0 and (best is None or cents > best[0]):
            spread = allocate(cents, [*amounts, shipping])
            per_line = [0] * size
            for i in range(size):
                per_line[listed[i]] = spread[i]
            best = (cents, spread, Applied(p.id, p.name, p.kind.value, p.stage.value, cents, tuple(per_line),
                                           spread[-1], points_used=blocks * p.rate_points))
    if best is not None:
        _, spread, applied = best
        amounts = [a - d for a, d in zip(amounts, spread[:-1], strict=True)]
        shipping -= applied.shipping
        outcome.applied.append(applied)
        outcome.points_used = applied.points_used
    outcome.amounts = amounts
    outcome.total = sum(amounts) + shipping
    return outcome


def quote(cart: Cart, promotions: Sequence[Promotion] | RuleIndex, *, contact: Contact = ANONYMOUS,
          coupons: Sequence[OfferedCoupon] = (), points: Points = NO_POINTS,
          usage: Mapping[int, Usage] | None = None, exhaustive_limit: int = EXHAUSTIVE_LIMIT) -> Quote:
    """Price a cart: the best valid combination of `promotions` (the active rule set, best given as a `RuleIndex`
    built once per version) for the customer."""
    usage = usage or {}
    rules = promotions if isinstance(promotions, RuleIndex) else RuleIndex(promotions)
    order = _canonical(cart.lines)
    lines = [cart.lines[i] for i in order]
    not_applied: list[NotApplied] = []
    coupon_for_template: dict[int, str] = {}
    for coupon in coupons:
        problem = _coupon_problem(coupon, cart, contact)
        if problem is None and coupon.template_id in coupon_for_template:
            problem = (Reason.COUPON_DUPLICATE, "another coupon of the same kind is already offered")
        if problem is not None:
            not_applied.append(NotApplied(None, problem[0], problem[1], coupon.code))
        elif coupon.template_id is not None:
            coupon_for_template[coupon.template_id] = coupon.code
    cel_vars = variables(cart, contact)
    conditions: dict[str, bool] = {}  # one evaluation per distinct condition and quote
    by_category: dict[str, list[int]] = {}
    by_sku: dict[str, list[int]] = {}
    for i, line in enumerate(lines):
        by_category.setdefault(line.category, []).append(i)
        by_sku.setdefault(line.sku, []).append(i)
    reach = rules.reaching(by_sku, by_category)
    amounts = [line.amount for line in lines]
    candidates: list[Candidate] = []
    points_candidates: list[Candidate] = []
    used_templates: set[int] = set()
    no_usage = Usage()
    for position, p in enumerate(rules.promotions):
        code = None
        if p.coupon_template_id is not None:
            code = coupon_for_template.get(p.coupon_template_id)
            if code is None:
                continue  # a coupon promotion nobody offered a coupon for is not a candidate
            used_templates.add(p.coupon_template_id)
        if p.kind is Kind.POINTS and points.requested <= 0:
            continue
        idx = _scoped(p, lines, by_category, by_sku) if position in reach else ()
        list_base = sum([amounts[i] for i in idx])
        facts = usage.get(p.id, no_usage)
        problem = _eligibility(p, cart, lines, idx, list_base, facts, cel_vars, points, conditions)
        if problem is not None:
            not_applied.append(NotApplied(p.id, problem[0], problem[1], code))
            continue
        budget_left = None if p.budget is None else p.budget - facts.budget_spent
        candidate = Candidate(p, idx, list_base, code, budget_left,
                              free_units=free_units(p, lines, idx) if p.kind is Kind.BUY_N_GET_M else ())
        (points_candidates if p.kind is Kind.POINTS else candidates).append(candidate)
    for template, code in coupon_for_template.items():
        if template not in used_templates:
            not_applied.append(NotApplied(None, Reason.COUPON_INVALID, "no active promotion uses this coupon", code))

    for position, c in enumerate(sorted(candidates, key=lambda c: (STAGE_ORDER[c.promotion.stage],
                                                                    c.promotion.rank()))):
        c.order = position
    memo: Memo = {}
    combined, alone, exhaustive = best_combination(candidates, lines, cart, exhaustive_limit, memo)
    listed = [0] * len(order)
    for canonical_index, original in enumerate(order):
        listed[canonical_index] = original
    outcome = _evaluate(combined, points_candidates, lines, cart, points, listed, memo)
    score = (outcome.before_points, -outcome.benefit, -sum(c.weight for c in combined))
    winner = None
    for alone_score, c in alone:  # an exclusive promotion alone against the best combination
        if alone_score < score:
            score, winner = alone_score, c
    if winner is not None:
        outcome = _evaluate([winner], points_candidates, lines, cart, points, listed, memo)
    applied_ids = {a.promotion_id for a in outcome.applied}
    for c in outcome.zero:
        not_applied.append(NotApplied(c.promotion.id, Reason.NO_SAVING, "nothing left for it to discount",
                                      c.coupon_code))
    zero_ids = {c.promotion.id for c in outcome.zero}
    winners = tuple(sorted(applied_ids))
    by_id = {c.promotion.id: c.promotion for c in candidates}
    rivals = [by_id[a] for a in winners if a in by_id]
    exclusive_winners = tuple(w.id for w in rivals if w.exclusivity is Exclusivity.EXCLUSIVE)
    every_winner = tuple(w.id for w in rivals)
    in_group: dict[str, list[Promotion]] = {}
    for w in rivals:
        if w.stacking_group is not None:
            in_group.setdefault(w.stacking_group, []).append(w)
    for c in [*candidates, *points_candidates]:
        p = c.promotion
        if p.id in applied_ids or p.id in zero_ids:
            continue
        if p.kind is Kind.POINTS:
            detail, by = "another points-as-cash promotion pays more", winners
        else:
            if p.exclusivity is Exclusivity.EXCLUSIVE:
                by = every_winner
            elif p.stacking_group is None:
                by = exclusive_winners
            else:
                by = tuple(sorted({*exclusive_winners, *(w.id for w in in_group.get(p.stacking_group, ())
                                                         if _conflicts(p, w))}))
            detail = (f"cannot combine with promotion(s) {', '.join(map(str, by))}, which save more" if by
                      else "a better combination was chosen")
        not_applied.append(NotApplied(p.id, Reason.EXCLUDED_BY, detail, c.coupon_code, by))

    final = [0] * len(order)
    for canonical_index, original in enumerate(order):
        final[original] = outcome.amounts[canonical_index]
    applied = tuple(outcome.applied)
    subtotal = sum(line.amount for line in cart.lines)
    line_quotes = tuple(LineQuote(line.sku, line.quantity, line.amount, line.amount - final[i], final[i])
                        for i, line in enumerate(cart.lines))
    not_applied.sort(key=lambda n: (n.promotion_id is None, n.promotion_id or 0, n.coupon_code or ""))
    return Quote(subtotal=subtotal, shipping=cart.shipping, discount=subtotal + cart.shipping - outcome.total,
                 total=outcome.total, lines=line_quotes, applied=applied, not_applied=tuple(not_applied),
                 points_used=outcome.points_used, gifts=tuple(a.gift for a in applied if a.gift), exhaustive=exhaustive)


def _conflicts(a: Promotion, b: Promotion | None) -> bool:
    if b is None or b.kind is Kind.POINTS:
        return False
    if Exclusivity.EXCLUSIVE in (a.exclusivity, b.exclusivity):
        return True
    return (a.stacking_group is not None and a.stacking_group == b.stacking_group
            and Exclusivity.GROUP in (a.exclusivity, b.exclusivity))
