"""The rule set prepared once per version (domain/promotions/index.py) and the variables a condition reads: what a
quote no longer works out per promotion must be what it would have worked out."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.promotions.conditions import reads, variables
from domain.promotions.index import RuleIndex
from domain.promotions.model import Cart, Contact, Line, promotion_from_json
from domain.promotions.pricing import Reason, quote
from domain.rules import evaluate

LINES = [Line("a", "x", 1_000, 1), Line("b", "x", 2_000, 2), Line("c", "y", 3_000, 1), Line("a", "z", 500, 3)]


def promo(pid: int, **fields: Any) -> Any:
    return promotion_from_json(pid, {"name": f"p{pid}", "kind": "percent_off", "percent": 10, **fields})


def test_each_covered_line_is_found_once_in_order_without_excluded_skus() -> None:
    index = RuleIndex([
        promo(1, scope={"categories": ["x"], "skus": ["a"]}),  # line 0 named twice (its SKU and its category)
        promo(2, scope={"excluded_skus": ["b"]}),  # everywhere but b
        promo(3, scope={"categories": ["nowhere"]}),
        promo(4, scope={"skus": ["c"], "excluded_skus": ["c"]}),  # names only what it excludes
    ])
    assert index.scoped(LINES) == {0: [0, 1, 3], 1: [0, 2, 3]}


def test_the_order_of_application_is_stage_then_priority_then_id() -> None:
    index = RuleIndex([promo(3), promo(1, priority=5), promo(2, kind="fixed_price", price=100),
                       promo(4, coupon_template_id=9)])
    # positions are in id order: 1 (order, priority 5), 2 (item), 3 (order), 4 (coupon)
    assert index.application == (1, 0, 2, 3)


def test_a_promotion_no_line_reaches_is_explained_the_same_way_with_or_without_checks() -> None:
    cart = Cart(tuple(LINES))
    plain = promo(1, scope={"categories": ["nowhere"]})
    gated = promo(2, scope={"categories": ["nowhere"]}, per_user_limit=3)
    result = quote(cart, RuleIndex([plain, gated]))
    why = "no cart line is in its scope"
    assert [(n.promotion_id, n.reason, n.detail) for n in result.not_applied] == [
        (1, Reason.NOT_IN_SCOPE, why), (2, Reason.NOT_IN_SCOPE, why)]


def test_a_condition_reads_only_the_fields_it_names() -> None:
    assert reads('cart.quantity >= 3 && context.channel != "pos"') == {"cart": {"quantity"}, "context": {"channel"}}
    assert reads('contact.traits.tier == "gold" && contact . is_new') == {"contact": {"traits", "is_new"}}
    assert reads("size(cart) > 0") == {"cart": None}  # used whole
    assert reads("cart.size() > 0") == {"cart": None}  # not one of its fields: whole
    assert reads('cart["skus"].size() > 0') == {"cart": None}
    assert reads("true") == {}


@pytest.mark.parametrize("expression", [
    'cart.quantity >= 3 && context.channel != "pos"', "contact.is_new", "cart.subtotal > 20000",
    '"a" in cart.skus && "x" in cart.categories', "size(cart) == 5", "cart.size() == 5",
    'contact.traits.tier == "gold"',
    "2 in contact.segments && contact.id == 7", "context.hour >= 12 && context.now != ''", "has(cart.shipping)",
    "has(contact.first_order) && !contact.first_order", "cart.missing == 1", "size(context) == 3",
])
def test_a_condition_holds_on_the_fields_it_reads_exactly_as_on_all_of_them(expression: str) -> None:
    cart = Cart(tuple(LINES), shipping=800, channel="app", now=datetime(2026, 12, 3, 14, tzinfo=UTC))
    contact = Contact(7, {"tier": "gold"}, frozenset({2, 5}), is_new=True)
    whole = evaluate(expression, variables(cart, contact))
    assert evaluate(expression, variables(cart, contact, reads(expression))) is whole
