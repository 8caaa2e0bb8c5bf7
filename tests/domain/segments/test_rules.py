"""Segment rules: strict validation that names the problem, and what each operator means."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import DomainError
from domain.segments.evaluate import ContactFacts, Occurrence, matches
from domain.segments.rules import (
    All,
    InvalidRule,
    check_no_cycle,
    dependents,
    is_time_based,
    parse_rule,
    referenced_segments,
    refresh_order,
    transition_message_id,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize("rule, message", [
    ({"field": "traits.plan", "op": "equals", "value": "pro"}, 'rule.op: unknown operator "equals"'),
    ({"field": "email", "op": "gt", "value": 3}, "field 'email' is a string; 3 is a number"),
    ({"field": "favourite_colour", "op": "eq", "value": "red"}, "unknown field 'favourite_colour'"),
    ({"field": "identities.skype", "op": "exists"}, "unknown field 'identities.skype'"),
    ({"field": "created_at", "op": "contains", "value": "x"}, "'contains' does not apply to datetime field"),
    ({"field": "created_at", "op": "before", "value": "yesterday"}, "ISO-8601"),
    ({"field": "traits.tags", "op": "in", "value": []}, "non-empty list"),
    ({"field": "traits.tags", "op": "in", "value": [1, "a"]}, "one type"),
    ({"field": "traits.age", "op": "between", "value": [1]}, "\\[low, high\\]"),
    ({"field": "traits.age", "op": "gt", "value": True}, "number or a string"),
    ({"field": "traits.name", "op": "contains", "value": 3}, "needs a string value"),
    ({"field": "traits.age", "op": "exists", "value": 3}, "takes no value"),
    ({"field": "traits.age", "op": "gt"}, "needs a `value`"),
    ({"and": []}, "rule.and: expected a non-empty list"),
    ({"and": [{"field": "email", "op": "exists"}, {"fild": "x"}]}, "rule.and\\[1\\]: unknown condition"),
    ({"not": {"field": "email", "op": "exists"}, "x": 1}, "unexpected key"),
    ({"event": "order_paid", "count": {"op": "most", "value": 2}}, "unknown count operator"),
    ({"event": "order_paid", "count": {"op": "gte", "value": -1}}, "non-negative"),
    ({"event": "order_paid", "within_last": "12h"}, "whole days"),
    ({"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 21}}, "up to 20"),
    ({"event": "order_paid", "where": {"field": "traits.plan", "op": "exists"}}, "unknown event field"),
    ({"event": "order_paid", "where": {"event": "x"}}, "cannot be nested"),
    ({"event": "order_paid", "where_cel": "event.properties.amount >"}, "CEL syntax error"),
    ({"event": "app_open", "last": {"op": "exists"}}, "use one of before, after, within_last"),
    ({"segment": "vip"}, "segment id"),
    ("traits.plan == 'pro'", "expected an object"),
])
def test_invalid_rules_are_rejected_with_a_message_naming_the_problem(rule: object, message: str) -> None:
    with pytest.raises(DomainError, match=message) as caught:
        parse_rule(rule)
    assert caught.value.status == 422


def test_deeply_nested_rules_are_rejected() -> None:
    rule: dict = {"field": "email", "op": "exists"}
    for _ in range(20):
        rule = {"not": rule}
    with pytest.raises(InvalidRule, match="nest at most"):
        parse_rule(rule)


def _facts(**kw: object) -> ContactFacts:
    return ContactFacts(**kw)  # type: ignore[arg-type]


def _orders(*days_ago: int, amount: int = 150) -> list[Occurrence]:
    return [Occurrence("order_paid", NOW - timedelta(days=d), {"amount": amount}) for d in days_ago]


def test_did_order_paid_twice_in_30_days_with_amount_over_100() -> None:
    rule = parse_rule({"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 2},
                       "where": {"field": "properties.amount", "op": "gt", "value": 100}})
    assert matches(rule, _facts(events=_orders(1, 29)), NOW)
    assert not matches(rule, _facts(events=_orders(1, 40)), NOW)
    assert not matches(rule, _facts(events=_orders(1, 2, amount=90)), NOW)


def test_last_app_open_more_than_14_days_ago() -> None:
    rule = parse_rule({"event": "app_open", "last": {"op": "before", "value": "14d"}})
    opened = lambda d: _facts(events=[Occurrence("app_open", NOW - timedelta(days=d))])  # noqa: E731
    assert matches(rule, opened(20), NOW)
    assert not matches(rule, opened(3), NOW)
    assert not matches(rule, _facts(), NOW), "never opened is not 'last opened before'"


def test_count_of_zero_matches_contacts_without_events() -> None:
    rule = parse_rule({"event": "order_paid", "count": {"op": "eq", "value": 0}})
    assert matches(rule, _facts(), NOW)
    assert not matches(rule, _facts(events=_orders(400)), NOW)


def test_traits_compare_with_strict_types_and_unwrap_arrays() -> None:
    facts = _facts(traits={"age": 30, "zip": "30", "tags": ["vip", "beta"], "addr": {"city": "Oslo"}})
    assert matches(parse_rule({"field": "traits.age", "op": "gt", "value": 20}), facts, NOW)
    assert not matches(parse_rule({"field": "traits.zip", "op": "gt", "value": 20}), facts, NOW)
    assert matches(parse_rule({"field": "traits.tags", "op": "eq", "value": "vip"}), facts, NOW)
    assert matches(parse_rule({"field": "traits.addr.city", "op": "starts_with", "value": "Os"}), facts, NOW)
    assert matches(parse_rule({"field": "traits.missing", "op": "neq", "value": 1}), facts, NOW)


def test_identity_and_segment_conditions() -> None:
    facts = _facts(identities={"wechat_openid": ["o-1"]}, segments={7})
    assert matches(parse_rule({"field": "identities.wechat_openid", "op": "exists"}), facts, NOW)
    assert matches(parse_rule({"segment": 7}), facts, NOW)
    assert not matches(parse_rule({"not": {"segment": 7}}), facts, NOW)


scalars = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "b", "ab"]), st.booleans(), st.none())
trait_values = st.one_of(scalars, st.lists(scalars, max_size=3))


@settings(max_examples=200, deadline=None)
@given(trait_values, st.sampled_from([1, "a", True]))
def test_negated_operators_are_the_complement(value: object, literal: object) -> None:
    facts = _facts(traits={"x": value})
    for positive, negative, arg in (("eq", "neq", literal), ("in", "not_in", [literal]),
                                    ("exists", "not_exists", None)):
        p = {"field": "traits.x", "op": positive} | ({"value": arg} if arg is not None else {})
        n = {"field": "traits.x", "op": negative} | ({"value": arg} if arg is not None else {})
        assert matches(parse_rule(n), facts, NOW) == (not matches(parse_rule(p), facts, NOW))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 60), max_size=8), st.integers(1, 60), st.integers(0, 5))
def test_a_wider_window_never_loses_members(days_ago: list[int], window: int, n: int) -> None:
    narrow = parse_rule({"event": "order_paid", "within_last": f"{window}d", "count": {"op": "gte", "value": n}})
    wide = parse_rule({"event": "order_paid", "within_last": f"{window + 7}d", "count": {"op": "gte", "value": n}})
    facts = _facts(events=_orders(*days_ago))
    assert not matches(narrow, facts, NOW) or matches(wide, facts, NOW)


def test_membership_references_cycles_and_refresh_order() -> None:
    rule = parse_rule({"and": [{"segment": 2}, {"or": [{"segment": 3}, {"not": {"segment": 4}}]}]})
    assert isinstance(rule, All)
    assert referenced_segments(rule) == {2, 3, 4}
    with pytest.raises(InvalidRule, match="cycle \\(1 → 2 → 1\\)"):
        check_no_cycle(1, {1: {2}, 2: {1}})
    order = refresh_order({1: {2, 3}, 2: {3}, 3: set()})
    assert order.index(3) < order.index(2) < order.index(1)


def test_time_based_rules_are_recognised() -> None:
    assert is_time_based(parse_rule({"event": "app_open", "within_last": "7d"}))
    assert is_time_based(parse_rule({"field": "created_at", "op": "within_last", "value": "7d"}))
    assert not is_time_based(parse_rule({"field": "created_at", "op": "after", "value": "2024-01-01"}))
    assert not is_time_based(parse_rule({"event": "app_open"}))


def test_dependents_follow_references_transitively() -> None:
    references = {2: {1}, 3: {2}, 4: {1, 3}, 5: {6}, 6: set()}
    assert dependents(1, references) == {2, 3, 4}
    assert dependents(3, references) == {4}
    assert dependents(4, references) == set()
    assert dependents(6, references) == {5}


@given(st.dictionaries(st.integers(1, 12), st.sets(st.integers(1, 12), max_size=3), max_size=12), st.integers(1, 12))
def test_dependents_are_exactly_the_segments_that_reach_it(references: dict[int, set[int]], start: int) -> None:
    def reaches(sid: int, seen: frozenset[int] = frozenset()) -> bool:
        return any(n == start or (n not in seen and reaches(n, seen | {n})) for n in references.get(sid, set()))

    assert dependents(start, references) == {sid for sid in references if sid != start and reaches(sid)}


def test_transition_message_ids_are_made_of_business_ids() -> None:
    assert transition_message_id(12, 345, "segment_entered", 9) == "segment:12:345:entered:9"
    assert transition_message_id(12, 345, "segment_exited", 10) == "segment:12:345:exited:10"


@pytest.mark.parametrize("name", ["segment_entered", "segment_exited"])
def test_rules_cannot_count_segment_events(name: str) -> None:
    with pytest.raises(InvalidRule, match="emitted by Nudge itself"):
        parse_rule({"not": {"event": name, "where": {"field": "properties.segment_id", "op": "eq", "value": 1}}})
