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

from domain.promotions.allocation import allocate
from domain.promotions.choices import best_alone, best_combination
from domain.promotions.conditions import Conditions
from domain.promotions.index import NOT_IN_SCOPE, RuleIndex
from domain.promotions.model import (
    Cart,
    Contact,
    Line,
    OfferedCoupon,
    Points,
    Promotion,
    Usage,
)
from domain.promotions.quotes import Applied, Gift, LineQuote, NotApplied, Quote, Reason
from domain.promotions.search import (
    BUY_N_GET_M,
    EXCLUSIVE,
    EXHAUSTIVE_LIMIT,
    FREE_SHIPPING,
    GIFT,
    GROUP,
    POINTS,
    TIERED,
    Candidate,
    Memo,
    by_order,
    free_units,
    memo_step,
    step,
)

__all__ = ["ANONYMOUS", "NO_POINTS", "Applied", "Gift", "LineQuote", "NotApplied", "Quote", "Reason", "quote"]

ANONYMOUS = Contact()
NO_POINTS = Points()
NO_USAGE = Usage()


@dataclass
class _Outcome:
    total: int
    benefit: int
    applied: list[Applied] = field(default_factory=list)
    zero: list[Candidate] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    points_used: int = 0
    before_points: int = 0


def _canonical(lines: Sequence[Line]) -> list[int]:
    return sorted(range(len(lines)), key=lambda i: (lines[i].sku, lines[i].category, lines[i].unit_price,
                                                    lines[i].quantity, i))


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


def _gate(promotion: Promotion, cart: Cart, usage: Usage) -> tuple[Reason, str] | None:
    """The checks that come before the scope's, for a promotion that has any (`RuleIndex.gated`)."""
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
    return None


def _eligibility(promotion: Promotion, cart: Cart, lines: Sequence[Line], idx: tuple[int, ...], list_base: int,
                 usage: Usage, conditions: Conditions, points: Points) -> tuple[Reason, str] | None:
    """The checks after `_gate`'s, in order."""
    if usage.stock_left is not None and usage.stock_left <= 0:
        return Reason.OUT_OF_STOCK, "no stock left"
    kind = promotion.kind
    if kind is POINTS:
        if points.balance < points.requested:
            return Reason.INSUFFICIENT_POINTS, f"{points.requested} points requested, {points.balance} available"
    elif not idx:
        return Reason.NOT_IN_SCOPE, NOT_IN_SCOPE
    if promotion.condition and not conditions.hold(promotion.condition):
        return Reason.CONDITION_FALSE, "its condition is false for this cart and customer"
    if kind is TIERED:
        lowest = promotion.tiers[0].threshold
        if list_base < lowest:
            return Reason.THRESHOLD_NOT_MET, f"the lowest tier needs {lowest}, the eligible items come to {list_base}"
    elif kind is BUY_N_GET_M:
        need = promotion.buy + promotion.get
        have = sum([lines[i].quantity for i in idx])
        if have < need:
            return Reason.THRESHOLD_NOT_MET, f"needs {need} eligible units, the cart has {have}"
    elif kind is not POINTS and list_base < promotion.threshold:
        return Reason.THRESHOLD_NOT_MET, f"needs {promotion.threshold}, the eligible items come to {list_base}"
    return None


def _evaluate(chosen: Sequence[Candidate], points_candidates: Sequence[Candidate], lines: Sequence[Line],
              cart: Cart, points: Points, listed: Sequence[int], memo: Memo, rules: RuleIndex) -> _Outcome:
    """The chosen combination in full: every applied promotion with its per-line discount, then points. `lines` are
    in canonical order; `listed[i]` is where canonical line i sits in the cart as the customer listed it, which is
    the order of every per-line tuple of the outcome."""
    amounts = [line.amount for line in lines]
    shipping = cart.shipping
    outcome = _Outcome(0, 0)
    size = len(lines)
    nothing = (0,) * size
    kinds, stages = rules.kinds, rules.stages
    for c in sorted(chosen, key=by_order):
        p = c.promotion
        kind = p.kind
        gift = None
        if kind is GIFT:  # takes nothing off (its threshold is met at list price)
            gift = Gift(p.gift_sku, p.gift_value)
            outcome.benefit += p.gift_value
            outcome.applied.append(Applied(p.id, p.name, kinds[c.position], stages[c.position], 0, nothing, 0, gift,
                                           c.coupon_code))
            continue
        if kind is FREE_SHIPPING:  # takes the fee left, at most its budget, and nothing off the lines
            ship = shipping if c.budget_left is None else min(shipping, c.budget_left)
            if ship == 0:
                outcome.zero.append(c)
                continue
            shipping -= ship
            outcome.applied.append(Applied(p.id, p.name, kinds[c.position], stages[c.position], ship, nothing, ship,
                                           None, c.coupon_code))
            continue
        # priced by the search already, or never seen by it
        sparse, ship = memo_step(c, lines, amounts, shipping, memo) if c.remembered else step(c, lines, amounts,
                                                                                              shipping)
        total = sum(sparse) + ship
        if total == 0:
            outcome.zero.append(c)
            continue
        per_line = [0] * size
        for i, d in zip(c.idx, sparse, strict=True):
            per_line[listed[i]] = d
            amounts[i] -= d
        shipping -= ship
        outcome.applied.append(Applied(p.id, p.name, kinds[c.position], stages[c.position], total, tuple(per_line),
                                       ship, None, c.coupon_code))
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
    coupon_notes: list[NotApplied] = []  # about an offered code rather than a promotion: listed last, by code
    coupon_for_template: dict[int, str] = {}
    for coupon in coupons:
        problem = _coupon_problem(coupon, cart, contact)
        if problem is None and coupon.template_id in coupon_for_template:
            problem = (Reason.COUPON_DUPLICATE, "another coupon of the same kind is already offered")
        if problem is not None:
            coupon_notes.append(NotApplied(None, problem[0], problem[1], coupon.code))
        elif coupon.template_id is not None:
            coupon_for_template[coupon.template_id] = coupon.code
    conditions = Conditions(cart, contact)  # one evaluation per distinct condition and quote
    scoped = rules.scoped(lines)
    amounts = [line.amount for line in lines]
    # Per position (promotions in id order): why it did not apply, if it did not; a promotion has one reason at most.
    notes: list[NotApplied | None] = [None] * len(rules.promotions)
    candidates: list[Candidate] = []
    points_candidates: list[Candidate] = []
    used_templates: set[int] = set()
    gated, not_in_scope, application = rules.gated, rules.not_in_scope, rules.application
    for position, p in enumerate(rules.promotions):
        code = None
        if p.coupon_template_id is not None:
            code = coupon_for_template.get(p.coupon_template_id)
            if code is None:
                continue  # a coupon promotion nobody offered a coupon for is not a candidate
            used_templates.add(p.coupon_template_id)
        kind = p.kind
        if kind is POINTS and points.requested <= 0:
            continue
        covered = scoped.get(position)
        facts = usage.get(p.id, NO_USAGE)
        if covered is None and kind is not POINTS and code is None and not gated[position] and (
                facts.stock_left is None or facts.stock_left > 0):
            notes[position] = not_in_scope[position]  # what _eligibility says, worked out once per rule set
            continue
        idx = () if covered is None else tuple(covered)
        list_base = sum([amounts[i] for i in idx])
        problem = _gate(p, cart, facts) if gated[position] else None
        if problem is None:
            problem = _eligibility(p, cart, lines, idx, list_base, facts, conditions, points)
        if problem is not None:
            notes[position] = NotApplied(p.id, problem[0], problem[1], code)
            continue
        budget_left = None if p.budget is None else p.budget - facts.budget_spent
        candidate = Candidate(p, idx, list_base, code, budget_left, application[position],
                              free_units(p, lines, idx) if kind is BUY_N_GET_M else (), position=position)
        (points_candidates if kind is POINTS else candidates).append(candidate)
    for template, code in coupon_for_template.items():
        if template not in used_templates:
            coupon_notes.append(NotApplied(None, Reason.COUPON_INVALID, "no active promotion uses this coupon", code))

    # `order`: the place in the order of application among the candidates (the index's order, made dense).
    for place, c in enumerate(sorted(candidates, key=by_order)):
        c.order = place
    memo: Memo = {}
    combined, exclusive, exhaustive = best_combination(candidates, lines, cart, exhaustive_limit, memo)
    listed = order  # canonical line i is the cart's line order[i]
    outcome = _evaluate(combined, points_candidates, lines, cart, points, listed, memo, rules)
    score = (outcome.before_points, -outcome.benefit, -sum(c.weight for c in combined))
    winner = best_alone(exclusive, score, lines, cart, memo)  # an exclusive promotion alone against it
    if winner is not None:
        outcome = _evaluate([winner], points_candidates, lines, cart, points, listed, memo, rules)
    applied_ids = {a.promotion_id for a in outcome.applied}
    for c in outcome.zero:
        notes[c.position] = NotApplied(c.promotion.id, Reason.NO_SAVING, "nothing left for it to discount",
                                       c.coupon_code)
    zero_ids = {c.promotion.id for c in outcome.zero}
    _explain_losers(candidates, points_candidates, applied_ids, zero_ids, notes)

    final = [0] * len(order)
    for canonical_index, original in enumerate(order):
        final[original] = outcome.amounts[canonical_index]
    applied = tuple(outcome.applied)
    listed_amounts = [line.amount for line in cart.lines]
    subtotal = sum(listed_amounts)
    line_quotes = tuple([LineQuote(line.sku, line.quantity, amount, amount - left, left)
                         for line, amount, left in zip(cart.lines, listed_amounts, final, strict=True)])
    coupon_notes.sort(key=lambda n: n.coupon_code or "")
    return Quote(subtotal=subtotal, shipping=cart.shipping, discount=subtotal + cart.shipping - outcome.total,
                 total=outcome.total, lines=line_quotes, applied=applied,
                 not_applied=(*(n for n in notes if n is not None), *coupon_notes),
                 points_used=outcome.points_used, gifts=tuple(a.gift for a in applied if a.gift), exhaustive=exhaustive)


def _explain_losers(candidates: Sequence[Candidate], points_candidates: Sequence[Candidate], applied_ids: set[int],
                    zero_ids: set[int], notes: list[NotApplied | None]) -> None:
    """Every candidate neither applied nor saving nothing was excluded: by whom (the winners it conflicts with)."""
    winners = tuple(sorted(applied_ids))
    by_id = {c.promotion.id: c.promotion for c in candidates}
    rivals = [by_id[a] for a in winners if a in by_id]
    exclusive_winners = tuple(w.id for w in rivals if w.exclusivity is EXCLUSIVE)
    every_winner = tuple(w.id for w in rivals)
    in_group: dict[str, list[Promotion]] = {}
    for w in rivals:
        if w.stacking_group is not None:
            in_group.setdefault(w.stacking_group, []).append(w)
    listed: dict[tuple[int, ...], str] = {}  # the same winners named for many losers: joined once
    by_group: dict[tuple[str, str], tuple[int, ...]] = {}
    for c in [*candidates, *points_candidates]:
        p = c.promotion
        if p.id in applied_ids or p.id in zero_ids:
            continue
        if p.kind is POINTS:
            detail, by = "another points-as-cash promotion pays more", winners
        else:
            if p.exclusivity is EXCLUSIVE:
                by = every_winner
            elif p.stacking_group is None:
                by = exclusive_winners
            else:  # the same for every loser of its group and exclusivity
                key = (p.stacking_group, p.exclusivity)
                found = by_group.get(key)
                if found is None:
                    found = by_group[key] = tuple(sorted({*exclusive_winners, *(
                        w.id for w in in_group.get(p.stacking_group, ()) if _conflicts(p, w))}))
                by = found
            if not by:
                detail = "a better combination was chosen"
            else:
                names = listed.get(by)
                if names is None:
                    names = listed[by] = ", ".join(map(str, by))
                detail = f"cannot combine with promotion(s) {names}, which save more"
        notes[c.position] = NotApplied(p.id, Reason.EXCLUDED_BY, detail, c.coupon_code, by)


def _conflicts(a: Promotion, b: Promotion | None) -> bool:
    if b is None or b.kind is POINTS:
        return False
    if EXCLUSIVE in (a.exclusivity, b.exclusivity):
        return True
    return (a.stacking_group is not None and a.stacking_group == b.stacking_group
            and GROUP in (a.exclusivity, b.exclusivity))
