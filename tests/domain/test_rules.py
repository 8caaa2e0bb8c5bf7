"""CEL: compiled once and cached, errors are values, and the segment subset means what CEL means."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import rules
from domain.rules import InvalidExpression, cel_to_tree, compile_expression, evaluate
from domain.segments.evaluate import Occurrence, occurrence_matches
from domain.segments.rules import parse_rule

NOW = datetime(2025, 6, 1, tzinfo=UTC)


def test_expressions_are_compiled_once_and_cached() -> None:
    compile_expression.cache_clear()
    first = compile_expression("event.properties.pay_status == 1")
    second = compile_expression("event.properties.pay_status == 1")
    assert first is second
    assert compile_expression.cache_info().hits == 1


def test_seed_condition_evaluates_against_an_event() -> None:
    expr = 'event.properties.pay_status == 1 && event.properties.product_type in ["11", "12"]'
    assert evaluate(expr, {"event": {"properties": {"pay_status": 1, "product_type": "12"}}})
    assert not evaluate(expr, {"event": {"properties": {"pay_status": 1, "product_type": "13"}}})


def test_missing_field_or_type_mismatch_is_false_not_an_error() -> None:
    assert not evaluate("event.properties.amount > 100", {"event": {"properties": {}}})
    assert not evaluate("event.properties.amount > 100", {"event": {"properties": {"amount": "lots"}}})
    assert rules.evaluate_many("event.properties.a == 1", [{"event": {"properties": {"a": 1}}}, {}]) == [True, False]


def test_syntax_error_names_the_position() -> None:
    with pytest.raises(InvalidExpression, match="CEL syntax error.*1:21"):
        compile_expression("event.properties.a >")


@pytest.mark.parametrize("expression, message", [
    ("size(event.properties.tags) > 1", "unexpected '\\('"),
    ("event.properties.a == event.properties.b", "literal on the other"),
    ("user.age > 3", "unknown field 'user.age'"),
    ("event.properties.name.matches('x')", "matches\\(\\) is not supported"),
])
def test_cel_outside_the_segment_subset_is_rejected_with_the_reason(expression: str, message: str) -> None:
    with pytest.raises(InvalidExpression, match=message):
        cel_to_tree(expression)


def test_bracket_keys_and_flipped_comparisons_translate() -> None:
    assert cel_to_tree('100 < event.properties["order-total"]') == {
        "field": "properties.order-total", "op": "gt", "value": 100}
    assert cel_to_tree("event.properties.vip") == {"field": "properties.vip", "op": "eq", "value": True}


NAMES = st.sampled_from(["amount", "sku", "vip"])
VALUES = {"amount": st.integers(-5, 5), "sku": st.sampled_from(["a", "ab", "b", "ba"]), "vip": st.booleans()}


@st.composite
def atoms(draw: st.DrawFn) -> str:
    name = draw(NAMES)
    literal = draw(VALUES[name])
    text = f'"{literal}"' if isinstance(literal, str) else str(literal).lower()
    ops = ["==", "!="] if name == "vip" else ["==", "!=", "<", "<=", ">", ">="]
    choice = draw(st.sampled_from([*ops, "in", "method"] if name == "sku" else ops))
    if choice == "in":
        return f"event.properties.sku in [{text}, \"b\"]"
    if choice == "method":
        method = draw(st.sampled_from(["contains", "startsWith"]))
        return f"event.properties.sku.{method}({text})"
    return f"event.properties.{name} {choice} {text}"


expressions = st.recursive(atoms(), lambda inner: st.one_of(
    st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    inner.map(lambda e: f"!({e})"),
), max_leaves=6)
events = st.fixed_dictionaries({name: VALUES[name] for name in VALUES})


@settings(max_examples=150, deadline=None)
@given(expressions, events)
def test_translated_cel_agrees_with_cel_on_complete_events(expression: str, properties: dict) -> None:
    where = parse_rule({"event": "e", "where_cel": expression}).where  # type: ignore[union-attr]
    assert where is not None
    ours = occurrence_matches(where, Occurrence("e", NOW, properties), NOW)
    assert ours == evaluate(expression, {"event": {"properties": properties}})


PRUNABLE = [
    "contact.traits.n % 4 != 0",
    "has(contact.traits.vip) && contact.traits.tier == 'gold'",
    "contact.traits.tags.exists(t, t == 'x') || event.properties.amount > 3",
    "contact.id > 2 && contact.traits.n > 1",
    "contact.traits.tags.size() > 1",
    'event.properties.name == "contact.traits.secret"',
]
WHOLE = ["size(contact.traits) > 2", "contact.traits['n'] == 1", "has(contact.traits)", "contact.traits.size() > 2",
         "[1, 2].exists(contact, contact > 1) && has(contact.traits.n)", "contact == {}"]
trait_values = st.one_of(st.integers(-5, 5), st.sampled_from(["gold", "x", "silver"]), st.booleans(),
                         st.lists(st.sampled_from(["x", "y"]), max_size=3))
traits = st.dictionaries(st.sampled_from(["n", "vip", "tier", "tags", "secret", "other"]), trait_values, max_size=6)


def test_needs_prunes_traits_to_the_keys_named_and_keeps_everything_otherwise() -> None:
    assert rules.needs(PRUNABLE[0], "contact", "traits").keys == (("contact", "traits", frozenset({"n"})),)
    assert rules.needs(PRUNABLE[0], "contact", "traits").names == frozenset({"contact"})
    assert rules.needs(PRUNABLE[2], "contact", "traits").keys == (("contact", "traits", frozenset({"tags"})),)
    kept = rules.pruned(PRUNABLE[0], {"contact": {"id": 1, "traits": {"n": 3, "big": "x" * 100}}, "event": {}},
                        "contact", "traits")
    assert kept == {"contact": {"id": 1, "traits": {"n": 3}}}
    for expression in WHOLE:
        assert rules.needs(expression, "contact", "traits").keys == (), expression


@given(st.sampled_from(PRUNABLE + WHOLE), traits, st.integers(0, 5), st.integers(0, 9))
def test_a_pruned_evaluation_agrees_with_the_full_one(expression: str, found: dict, contact_id: int,
                                                       amount: int) -> None:
    variables = {"contact": {"id": contact_id, "traits": found},
                 "event": {"event": "e", "properties": {"amount": amount, "name": "contact.traits.secret"}}}
    assert evaluate(expression, rules.pruned(expression, variables, "contact", "traits")) == \
        evaluate(expression, variables)


def test_references_name_the_paths_below_each_name_and_none_for_a_name_used_whole() -> None:
    found = rules.references("contact.traits.tier == 2 && cart . skus.size() > 1 && x.cart.y && size(context)")
    assert found == {"contact": frozenset({("traits", "tier")}), "cart": frozenset({("skus",)}),
                     "x": frozenset({("cart", "y")}), "size": None, "context": None}
    assert rules.references("cart.size() > 0 && contact[0] == 1") == {"cart": None, "contact": None}
