"""The pricing engine: every promotion kind priced by hand (a table of worked examples, seed 002's stacking and
mutual-exclusion cases among them), the best-combination choice, reasons for what did not apply, and the
properties: never below zero, allocations sum exactly, an extra stackable promotion never raises the price, line
order is irrelevant."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.promotions.model import (
    Cart,
    Contact,
    Exclusivity,
    Line,
    OfferedCoupon,
    Points,
    Promotion,
    Usage,
    promotion_from_json,
)
from domain.promotions.pricing import Reason, quote

NOW = datetime(2026, 12, 3, 12, tzinfo=UTC)
PHONE = Line("phone", "phones", 300_000, 1)  # ¥3000.00
CASE = Line("case", "accessories", 5_000, 2)  # 2 × ¥50.00
CABLE = Line("cable", "accessories", 2_000, 3)  # 3 × ¥20.00
CART = Cart((PHONE, CASE, CABLE), shipping=1_000, now=NOW)  # 316,000 + 1,000 shipping


def promo(pid: int, kind: str, **fields: Any) -> Promotion:
    return promotion_from_json(pid, {"name": f"p{pid}", "kind": kind, **fields})


ACC = {"categories": ["accessories"]}

# (name, promotions, expected total, expected applied ids, extra checks)
WORKED: list[tuple[str, list[Promotion], int, set[int]]] = [
    ("满减: 200 off over 3000", [promo(1, "amount_off", threshold=300_000, amount=20_000)], 297_000, {1}),
    ("满减 not met", [promo(1, "amount_off", threshold=400_000, amount=20_000)], 317_000, set()),
    ("每满减: 10 off every 50 of accessories (160 → 3 × 10)",
     [promo(1, "amount_off", threshold=5_000, amount=1_000, repeat=True, scope=ACC)], 314_000, {1}),
    ("每满减 capped at 2 applications",
     [promo(1, "amount_off", threshold=5_000, amount=1_000, repeat=True, max_applications=2, scope=ACC)],
     315_000, {1}),
    ("tiered: 3000 → 300 off (highest tier reached)",
     [promo(1, "tiered", tiers=[{"threshold": 100_000, "amount": 10_000},
                                {"threshold": 300_000, "amount": 30_000},
                                {"threshold": 500_000, "amount": 60_000}])], 287_000, {1}),
    ("percent off accessories 10% (16,000 → 1,600)", [promo(1, "percent_off", percent=10, scope=ACC)], 315_400, {1}),
    ("percent off 10% capped at 500", [promo(1, "percent_off", percent=10, cap=500, scope=ACC)], 316_500, {1}),
    ("直降: cases at 30 each (2 × 20 off)", [promo(1, "fixed_price", price=3_000, scope={"skus": ["case"]})],
     313_000, {1}),
    ("buy 2 get 1: the cheapest cable of three free", [promo(1, "buy_n_get_m", buy=2, get=1, scope={"skus":
                                                                                                ["cable"]})],
     315_000, {1}),
    ("buy 2 get 1 over accessories: groups by price (case, case, cable | cable, cable)",
     [promo(1, "buy_n_get_m", buy=2, get=1, scope=ACC)], 315_000, {1}),
    ("gift above 3000: the price is unchanged, the gift is listed",
     [promo(1, "gift", threshold=300_000, gift_sku="earbuds", gift_value=19_900)], 317_000, {1}),
    ("free shipping above 100", [promo(1, "free_shipping", threshold=10_000)], 316_000, {1}),
    # Seed 002's stacking: item-level then order-level, each seeing what the previous left.
    ("直降 then 满减 stack (threshold at list price)",
     [promo(1, "fixed_price", price=3_000, scope={"skus": ["case"]}),
      promo(2, "amount_off", threshold=300_000, amount=20_000)], 293_000, {1, 2}),
    ("percent off after amount off sees the reduced amount",
     [promo(1, "amount_off", threshold=10_000, amount=6_000, scope=ACC),
      promo(2, "percent_off", percent=50, scope=ACC)], 306_000, {1, 2}),
    # Seed 002's mutual exclusion: two 满减 of one group, the better one wins.
    ("same group, exclusive within it: the larger saving wins",
     [promo(1, "amount_off", threshold=300_000, amount=20_000, stacking_group="full", exclusivity="group"),
      promo(2, "amount_off", threshold=300_000, amount=25_000, stacking_group="full", exclusivity="group")],
     292_000, {2}),
    ("an exclusive flash sale loses to the stack it excludes",
     [promo(1, "amount_off", threshold=300_000, amount=20_000),
      promo(2, "free_shipping"),
      promo(3, "percent_off", percent=5, exclusivity="exclusive")], 296_000, {1, 2}),
    ("an exclusive flash sale beats the stack",
     [promo(1, "amount_off", threshold=300_000, amount=20_000),
      promo(3, "percent_off", percent=10, exclusivity="exclusive")], 285_400, {3}),
    ("a group option of one exclusive member vs the group's stackables",
     [promo(1, "percent_off", percent=10, scope=ACC, stacking_group="acc", exclusivity="group"),
      promo(2, "fixed_price", price=1_000, scope={"skus": ["cable"]}, stacking_group="acc"),
      promo(3, "fixed_price", price=4_000, scope={"skus": ["case"]}, stacking_group="acc")], 312_000, {2, 3}),
]


@pytest.mark.parametrize(("promotions", "total", "applied"), [w[1:] for w in WORKED], ids=[w[0] for w in WORKED])
def test_worked_examples(promotions: list[Promotion], total: int, applied: set[int]) -> None:
    result = quote(CART, promotions)
    assert result.total == total
    assert {a.promotion_id for a in result.applied} == applied
    assert result.discount == result.subtotal + result.shipping - result.total
    for a in result.applied:
        assert sum(a.lines) + a.shipping == a.discount
    assert sum(line.discount for line in result.lines) + sum(a.shipping for a in result.applied) == result.discount


def test_gift_is_listed_with_its_value() -> None:
    result = quote(CART, [promo(1, "gift", threshold=300_000, gift_sku="earbuds", gift_value=19_900)])
    assert [(g.sku, g.value) for g in result.gifts] == [("earbuds", 19_900)]


def test_points_as_cash_after_everything_else_capped_by_share() -> None:
    # 100 points pay 100 cents, at most 10 % of what is left to pay
    points = promo(9, "points", program_id=1, rate_points=100, rate_cents=100, max_percent=10)
    result = quote(Cart((CASE,), now=NOW), [points, promo(1, "amount_off", threshold=0, amount=1_000)],
                   points=Points(requested=5_000, balance=6_000))
    assert result.total == 9_000 - 900  # 10 % of what the amount off left
    assert result.points_used == 900
    assert [a.stage for a in result.applied] == ["order", "points"]


def test_points_beyond_the_balance_are_refused() -> None:
    result = quote(Cart((CASE,), now=NOW), [promo(9, "points", program_id=1)],
                   points=Points(requested=500, balance=100))
    assert result.total == 10_000
    assert result.not_applied[0].reason is Reason.INSUFFICIENT_POINTS


def test_coupon_promotion_applies_only_with_a_valid_coupon() -> None:
    coupon_promo = promo(5, "amount_off", threshold=0, amount=2_000, coupon_template_id=7)
    assert quote(CART, [coupon_promo]).total == 317_000
    ok = OfferedCoupon("GOOD", template_id=7, contact_id=42, valid_until=NOW + timedelta(days=1))
    result = quote(CART, [coupon_promo], contact=Contact(id=42), coupons=[ok])
    assert result.total == 315_000
    assert result.coupon_codes == ("GOOD",)


@pytest.mark.parametrize(("coupon", "reason"), [
    (OfferedCoupon("NOPE"), Reason.COUPON_INVALID),
    (OfferedCoupon("OLD", template_id=7, valid_until=NOW - timedelta(seconds=1)), Reason.EXPIRED),
    (OfferedCoupon("SOON", template_id=7, valid_from=NOW + timedelta(days=1)), Reason.NOT_STARTED),
    (OfferedCoupon("USED", template_id=7, state="redeemed"), Reason.COUPON_USED),
    (OfferedCoupon("GONE", template_id=7, state="revoked"), Reason.COUPON_REVOKED),
    (OfferedCoupon("HELD", template_id=7, state="reserved", held_by="o-1"), Reason.COUPON_RESERVED),
    (OfferedCoupon("THEIRS", template_id=7, contact_id=99), Reason.COUPON_NOT_YOURS),
    (OfferedCoupon("ORPHAN", template_id=8), Reason.COUPON_INVALID),
])
def test_invalid_coupon_is_explained(coupon: OfferedCoupon, reason: Reason) -> None:
    result = quote(CART, [promo(5, "amount_off", amount=2_000, coupon_template_id=7)], contact=Contact(id=42),
                   coupons=[coupon])
    assert result.total == 317_000
    assert [(n.coupon_code, n.reason) for n in result.not_applied] == [(coupon.code, reason)]


def test_a_coupon_held_by_the_order_being_confirmed_counts() -> None:
    held = OfferedCoupon("HELD", template_id=7, state="reserved", held_by="o-1")
    cart = Cart(CART.lines, now=NOW, order_id="o-1")
    assert quote(cart, [promo(5, "amount_off", amount=2_000, coupon_template_id=7)], coupons=[held]).total == 314_000


@pytest.mark.parametrize(("promotion", "usage", "cart", "reason"), [
    (promo(1, "amount_off", amount=1, ends_at="2026-12-01T00:00:00+00:00"), Usage(), CART, Reason.EXPIRED),
    (promo(1, "amount_off", amount=1, starts_at="2026-12-04T00:00:00+00:00"), Usage(), CART, Reason.NOT_STARTED),
    (promo(1, "amount_off", amount=1, per_user_limit=1), Usage(used_by_contact=1), CART, Reason.LIMIT_REACHED),
    (promo(1, "amount_off", amount=1, budget=100), Usage(budget_spent=100), CART, Reason.BUDGET_EXHAUSTED),
    (promo(1, "amount_off", amount=1), Usage(stock_left=0), CART, Reason.OUT_OF_STOCK),
    (promo(1, "amount_off", amount=1, scope={"skus": ["tv"]}), Usage(), CART, Reason.NOT_IN_SCOPE),
    (promo(1, "amount_off", amount=1, scope={"excluded_skus": ["phone", "case", "cable"]}), Usage(), CART,
     Reason.NOT_IN_SCOPE),
    (promo(1, "amount_off", amount=1, condition="contact.is_new"), Usage(), CART, Reason.CONDITION_FALSE),
    (promo(1, "amount_off", amount=1, channels=["app"]), Usage(), CART, Reason.WRONG_CHANNEL),
    (promo(1, "buy_n_get_m", buy=3, get=1, scope={"skus": ["cable"]}), Usage(), CART, Reason.THRESHOLD_NOT_MET),
])
def test_not_applied_reasons(promotion: Promotion, usage: Usage, cart: Cart, reason: Reason) -> None:
    result = quote(cart, [promotion], usage={1: usage})
    assert result.applied == ()
    assert [(n.promotion_id, n.reason) for n in result.not_applied] == [(1, reason)]


def test_condition_sees_contact_cart_and_context() -> None:
    vip = promo(1, "percent_off", percent=10, condition='contact.traits.tier == "gold" && 3 in contact.segments '
                                                        '&& cart.quantity >= 6 && context.channel == "app"')
    cart = Cart(CART.lines, now=NOW, channel="app")
    assert quote(cart, [vip], contact=Contact(id=1, traits={"tier": "gold"}, segments=frozenset({3}))).applied
    assert not quote(cart, [vip], contact=Contact(id=1, traits={"tier": "silver"})).applied


def test_budget_caps_the_discount() -> None:
    result = quote(CART, [promo(1, "amount_off", amount=20_000, budget=50_000)], usage={1: Usage(budget_spent=49_000)})
    assert result.applied[0].discount == 1_000


def test_the_loser_of_a_group_says_who_excluded_it() -> None:
    result = quote(CART, [promo(1, "amount_off", amount=100, stacking_group="g", exclusivity="group"),
                          promo(2, "amount_off", amount=200, stacking_group="g", exclusivity="group")])
    (loser,) = result.not_applied
    assert (loser.promotion_id, loser.reason, loser.by) == (1, Reason.EXCLUDED_BY, (2,))


def test_equal_savings_prefer_priority_then_id() -> None:
    a = promo(1, "amount_off", amount=100, stacking_group="g", exclusivity="group")
    b = promo(2, "amount_off", amount=100, stacking_group="g", exclusivity="group", priority=5)
    c = promo(3, "amount_off", amount=100, stacking_group="g", exclusivity="group")
    assert [x.promotion_id for x in quote(CART, [a, c]).applied] == [1]
    assert [x.promotion_id for x in quote(CART, [a, b, c]).applied] == [2]


def test_greedy_above_the_limit_is_still_valid_and_deterministic() -> None:
    promotions = [promo(g * 10 + i, "amount_off", amount=100 * (i + 1) + g, stacking_group=f"g{g}",
                        exclusivity="group") for g in range(6) for i in range(3)]
    greedy = quote(CART, promotions, exhaustive_limit=10)
    full = quote(CART, promotions, exhaustive_limit=1_000)
    assert not greedy.exhaustive and full.exhaustive
    assert greedy.total == full.total  # independent groups: greedy is exact here
    assert greedy == quote(CART, list(reversed(promotions)), exhaustive_limit=10)


# ---- properties ---------------------------------------------------------------------------------------------

SKUS = ["a", "b", "c", "d"]
lines_st = st.lists(st.builds(Line, st.sampled_from(SKUS), st.sampled_from(["x", "y"]),
                              st.integers(0, 50_000), st.integers(1, 5)), min_size=1, max_size=6)
scope_st = st.sampled_from([{}, {"categories": ["x"]}, {"skus": ["a", "c"]}, {"excluded_skus": ["b"]}])
group_st = st.sampled_from([(None, "stackable"), ("g", "group"), ("g", "stackable"), ("h", "group"),
                            (None, "exclusive")])


@st.composite
def promotion_st(draw: st.DrawFn, pid: int) -> Promotion:
    kind = draw(st.sampled_from(["amount_off", "tiered", "percent_off", "fixed_price", "buy_n_get_m",
                                 "free_shipping", "gift"]))
    fields: dict[str, Any] = {"scope": draw(scope_st), "threshold": draw(st.integers(0, 60_000))}
    if kind == "amount_off":
        fields |= {"amount": draw(st.integers(1, 40_000)), "repeat": draw(st.booleans()) and fields["threshold"] > 0}
    elif kind == "tiered":
        fields = {"scope": fields["scope"], "tiers": [{"threshold": 1_000, "amount": 100},
                                                      {"threshold": 20_000, "amount": draw(st.integers(100, 9_000))}]}
    elif kind == "percent_off":
        fields |= {"percent": draw(st.integers(1, 100)), "cap": draw(st.none() | st.integers(1, 10_000))}
    elif kind == "fixed_price":
        fields |= {"price": draw(st.integers(0, 30_000))}
    elif kind == "buy_n_get_m":
        fields |= {"buy": draw(st.integers(1, 3)), "get": draw(st.integers(1, 2))}
    elif kind == "gift":
        fields |= {"gift_sku": "g", "gift_value": 100}
    group, exclusivity = draw(group_st)
    return promo(pid, kind, stacking_group=group, exclusivity=exclusivity, priority=draw(st.integers(0, 3)), **fields)


promotions_st = st.integers(0, 6).flatmap(lambda n: st.tuples(*[promotion_st(i + 1) for i in range(n)]))


@settings(max_examples=300, deadline=None)
@given(lines_st, promotions_st, st.integers(0, 2_000), st.integers(0, 3_000))
def test_never_below_zero_and_allocations_sum_exactly(lines: list[Line], promotions: tuple[Promotion, ...],
                                                     shipping: int, points: int) -> None:
    cash = promo(99, "points", program_id=1, rate_points=2, rate_cents=1, max_percent=60)
    result = quote(Cart(tuple(lines), shipping=shipping, now=NOW), [*promotions, cash],
                   points=Points(points, points))
    assert result.total >= 0
    assert all(line.total >= 0 for line in result.lines)
    assert result.total == sum(line.total for line in result.lines) + shipping - sum(a.shipping for a in
                                                                                     result.applied)
    for applied in result.applied:
        assert sum(applied.lines) + applied.shipping == applied.discount > 0 or applied.gift
        assert all(d >= 0 for d in applied.lines)


@settings(max_examples=300, deadline=None)
@given(lines_st, promotions_st, promotion_st(50), st.integers(0, 2_000))
def test_an_extra_stackable_promotion_never_raises_the_price(lines: list[Line], promotions: tuple[Promotion, ...],
                                                             extra: Promotion, shipping: int) -> None:
    stackable = replace(extra, stacking_group=None, exclusivity=Exclusivity.STACKABLE)
    cart = Cart(tuple(lines), shipping=shipping, now=NOW)
    assert quote(cart, [*promotions, stackable]).total <= quote(cart, list(promotions)).total


@settings(max_examples=200, deadline=None)
@given(lines_st, promotions_st, st.randoms(use_true_random=False))
def test_line_order_is_irrelevant(lines: list[Line], promotions: tuple[Promotion, ...], rnd: Any) -> None:
    shuffled = list(lines)
    rnd.shuffle(shuffled)
    a = quote(Cart(tuple(lines), shipping=500, now=NOW), list(promotions))
    b = quote(Cart(tuple(shuffled), shipping=500, now=NOW), list(promotions))
    assert (a.total, a.discount, [x.promotion_id for x in a.applied]) == (
        b.total, b.discount, [x.promotion_id for x in b.applied])

    def per_line(q: Any) -> list[tuple[str, int, int, int]]:
        return sorted((line.sku, line.amount, line.quantity, line.total) for line in q.lines)

    assert per_line(a) == per_line(b)


def _compatible(chosen: tuple[Promotion, ...]) -> bool:
    for i, a in enumerate(chosen):
        for b in chosen[i + 1:]:
            if Exclusivity.EXCLUSIVE in (a.exclusivity, b.exclusivity):
                return False
            if a.stacking_group and a.stacking_group == b.stacking_group and Exclusivity.GROUP in (a.exclusivity,
                                                                                                   b.exclusivity):
                return False
    return True


@settings(max_examples=150, deadline=None)
@given(lines_st, promotions_st, st.integers(0, 2_000))
def test_the_chosen_combination_is_the_best_of_every_valid_subset(
        lines: list[Line], promotions: tuple[Promotion, ...], shipping: int) -> None:
    cart = Cart(tuple(lines), shipping=shipping, now=NOW)
    best = quote(cart, list(promotions))
    subsets = [tuple(p for k, p in enumerate(promotions) if mask >> k & 1) for mask in range(1 << len(promotions))]
    assert best.total == min(quote(cart, list(s)).total for s in subsets if _compatible(s))


def test_groups_on_lines_no_promotion_shares_are_searched_apart() -> None:
    # 3^6 = 729 combinations in all, more than the exhaustive limit; but each group only touches its own line, so
    # six searches of 3 combinations each are exhaustive — and each line gets its group's best percentage.
    lines = tuple(Line(sku, "x", 10_000, 1) for sku in "abcdef")
    promotions = [promo(10 * g + i, "percent_off", percent=5 * (i + 1) + g, scope={"skus": [sku]},
                        stacking_group=sku, exclusivity="group") for g, sku in enumerate("abcdef") for i in range(3)]
    result = quote(Cart(lines, now=NOW), promotions)
    assert result.exhaustive
    assert sorted(a.promotion_id for a in result.applied) == [10 * g + 2 for g in range(6)]
    assert result.total == sum(10_000 - 100 * (15 + g) for g in range(6))


def test_a_group_saving_a_fixed_amount_is_decided_without_a_search() -> None:
    # Coupons taking a fixed amount off a cart far above it: what each saves does not depend on anything else taken,
    # so the group is decided alone (exhaustive even with a limit of one combination), ties to the earlier one. (The
    # percentage applies first: applied after the coupons, it would read their lines and they would not be fixed.)
    coupons_group = [promo(1, "amount_off", amount=300, stacking_group="c", exclusivity="group"),
                     promo(2, "amount_off", amount=900, stacking_group="c", exclusivity="group"),
                     promo(3, "amount_off", amount=900, stacking_group="c", exclusivity="group")]
    result = quote(CART, [*coupons_group, promo(4, "percent_off", percent=10, priority=5)], exhaustive_limit=1)
    assert result.exhaustive
    assert sorted(a.promotion_id for a in result.applied) == [2, 4]
    assert result.total == 316_000 - 31_600 - 900 + 1_000
