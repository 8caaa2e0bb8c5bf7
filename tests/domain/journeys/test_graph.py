"""Journey graphs: validation names the node; the interpreter always stops at a wait or an exit; splits are stable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.journeys.graph import InvalidJourney, Reentry, Split, parse
from domain.journeys.interpreter import (
    ContactView,
    Status,
    advance,
    may_enter,
    next_time_of_day,
    on_event,
    pick_branch,
    split_bucket,
)

NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
ALICE = ContactView(7, {"plan": "pro"}, "Asia/Shanghai")


def cart() -> dict[str, Any]:
    """The abandoned-cart journey: wait an hour for order_paid, else email; a day more, else SMS with points."""
    return {
        "reentry": {"policy": "per_days", "days": 7},
        "goal": {"event": "order_paid"},
        "nodes": [
            {"id": "start", "type": "trigger", "event": "cart_updated", "when": "event.properties.total > 0",
             "next": "paid1"},
            {"id": "paid1", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 3600,
             "next": "done", "timeout_next": "email"},
            {"id": "email", "type": "send", "chain": ["email"], "topic": "cart",
             "content": {"email": {"subject": "Your cart", "text": "Still thinking?"}}, "next": "paid2"},
            {"id": "paid2", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 86400,
             "next": "done", "timeout_next": "offer"},
            {"id": "offer", "type": "grant", "program_id": 1, "amount": 100, "next": "sms"},
            {"id": "sms", "type": "send", "chain": ["sms"], "content": {"sms": {"text": "100 points for you"}},
             "next": "done"},
            {"id": "done", "type": "exit"},
        ],
    }


def test_the_abandoned_cart_journey_is_valid() -> None:
    graph = parse(cart())
    assert graph.trigger.event == "cart_updated"
    assert graph.reentry is Reentry.PER_DAYS and graph.reentry_days == 7
    assert graph.goal is not None and graph.goal.event == "order_paid"


@pytest.mark.parametrize(("change", "message"), [
    (lambda g: g["nodes"].append({"id": "lost", "type": "exit"}), "node 'lost': unreachable"),
    (lambda g: g["nodes"][6].update(type="teleport"), "node 'done': unknown node type 'teleport'"),
    (lambda g: g["nodes"][0].update(when="event.properties.total >"), "node 'start': `when`"),
    (lambda g: g["nodes"][2]["content"].pop("email"), "node 'email': missing content for channel 'email'"),
    (lambda g: g["nodes"][2]["content"]["email"].pop("subject"), "node 'email': the email content needs a `subject`"),
    (lambda g: g["nodes"][5].update(next="nowhere"), "node 'sms': leads to 'nowhere'"),
    (lambda g: g["nodes"][5].update(next="offer"), "is on a cycle that passes no wait"),
    (lambda g: g["nodes"][4].update(amount=0), "node 'offer': `amount`"),
    (lambda g: g["nodes"][4].update(coupon_template_id=3), "node 'offer': a grant gives points"),
    (lambda g: g["nodes"][4].update(coupon_template_id=0, program_id=None, amount=None),
     "node 'offer': `coupon_template_id`"),
])
def test_invalid_graphs_are_refused_naming_the_node(change: Any, message: str) -> None:
    graph = cart()
    change(graph)
    with pytest.raises(InvalidJourney, match=message.replace("(", r"\(").replace("`", "`")):
        parse(graph)


def test_a_cycle_through_a_wait_is_allowed() -> None:
    graph = cart()
    graph["nodes"][5]["next"] = "paid2"  # remind again after another day: the loop passes a wait
    parse(graph)


def test_a_contact_runs_to_the_wait_then_times_out_into_the_email() -> None:
    graph = parse(cart())
    event = {"event": "cart_updated", "properties": {"total": 30}}
    first = advance(graph, 1, 1, ALICE, event, "start", Status.READY, NOW)
    assert (first.node, first.status, first.waiting_event) == ("paid1", Status.WAITING, "order_paid")
    assert first.wake_at == NOW + timedelta(hours=1)
    later = advance(graph, 1, 1, ALICE, event, "paid1", Status.WAITING, first.wake_at)
    assert [e.kind for e in later.effects] == ["send"] and later.node == "paid2"
    assert ("paid1", "timeout") in later.visits


def test_the_awaited_event_moves_the_contact_on_and_others_do_not() -> None:
    graph = parse(cart())
    assert on_event(graph, "paid1", ALICE, {"event": "order_paid", "properties": {}}) == "done"
    assert on_event(graph, "paid1", ALICE, {"event": "page_viewed", "properties": {}}) is None


def test_a_condition_reads_contact_and_event() -> None:
    graph = parse({"nodes": [
        {"id": "t", "type": "trigger", "event": "x", "next": "c"},
        {"id": "c", "type": "condition", "when": "contact.traits.plan == 'pro' && event.properties.n > 1",
         "yes": "y", "no": "n"},
        {"id": "y", "type": "update_contact", "traits": {"vip": True}, "next": "n"},
        {"id": "n", "type": "exit"}]})
    yes = advance(graph, 1, 1, ALICE, {"event": "x", "properties": {"n": 2}}, "t", Status.READY, NOW)
    no = advance(graph, 1, 1, ALICE, {"event": "x", "properties": {"n": 0}}, "t", Status.READY, NOW)
    assert ("c", "yes") in yes.visits and yes.effects[0].kind == "update" and yes.status is Status.EXITED
    assert ("c", "no") in no.visits and not no.effects


def test_a_wait_until_a_time_of_day_is_in_the_contacts_zone() -> None:
    # 10:00 UTC is 18:00 in Shanghai: 09:00 there is tomorrow 01:00 UTC.
    assert next_time_of_day(NOW, "09:00", ZoneInfo("Asia/Shanghai")) == datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    assert next_time_of_day(NOW, "09:00", ZoneInfo("America/New_York")) == datetime(2026, 12, 3, 14, 0, tzinfo=UTC)


def test_reentry_policies() -> None:
    once = parse(cart() | {"reentry": {"policy": "once"}})
    weekly = parse(cart())
    always = parse(cart() | {"reentry": {"policy": "every_time"}})
    assert may_enter(once, None, NOW) and not may_enter(once, NOW - timedelta(days=400), NOW)
    assert not may_enter(weekly, NOW - timedelta(days=6), NOW) and may_enter(weekly, NOW - timedelta(days=7), NOW)
    assert may_enter(always, NOW, NOW)


@given(st.integers(1, 10**12), st.integers(1, 10**12), st.integers(1, 1000))
def test_a_split_is_stable_for_a_journey_contact_and_entry(journey: int, contact: int, entry: int) -> None:
    assert split_bucket(journey, contact, entry) == split_bucket(journey, contact, entry)
    assert 0 <= split_bucket(journey, contact, entry) < 100


def test_split_shares_follow_the_percentages() -> None:
    graph = parse({"nodes": [
        {"id": "t", "type": "trigger", "event": "x", "next": "s"},
        {"id": "s", "type": "split", "branches": [{"percent": 50, "next": "e"}, {"percent": 40, "next": "e"}]},
        {"id": "e", "type": "exit"}]})
    split = graph.nodes["s"]
    assert isinstance(split, Split)
    picks = [pick_branch(split, split_bucket(1, c, 1)) for c in range(10_000)]
    assert 4_700 < picks.count(0) < 5_300 and 3_700 < picks.count(1) < 4_300 and 800 < picks.count(None) < 1_200


KINDS = ["wait", "wait_for_event", "condition", "split", "send", "update_contact", "exit"]


@st.composite
def graphs(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 8))
    ids = [f"n{i}" for i in range(n)]
    target = st.sampled_from(ids)
    nodes: list[dict[str, Any]] = [{"id": "t", "type": "trigger", "event": "go", "next": "n0"}]
    for node_id in ids:
        kind = draw(st.sampled_from(KINDS))
        node: dict[str, Any] = {"id": node_id, "type": kind}
        if kind == "wait":
            node |= {"seconds": draw(st.integers(1, 10**6)), "next": draw(target)}
        elif kind == "wait_for_event":
            node |= {"event": "e", "timeout_seconds": 60, "next": draw(target), "timeout_next": draw(target)}
        elif kind == "condition":
            node |= {"when": "event.properties.n > 1", "yes": draw(target), "no": draw(target)}
        elif kind == "split":
            node |= {"branches": [{"percent": 50, "next": draw(target)}, {"percent": 30, "next": draw(target)}]}
        elif kind == "send":
            node |= {"chain": ["sms"], "content": {"sms": {"text": "hi"}}, "next": draw(target)}
        elif kind == "update_contact":
            node |= {"traits": {"seen": 1}, "next": draw(target)}
        nodes.append(node)
    return {"nodes": nodes}


@settings(max_examples=300, deadline=None)
@given(graphs(), st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=20), st.integers(1, 10**6))
def test_a_valid_graph_always_stops_at_a_wait_or_an_exit(raw: dict[str, Any], steps: list[tuple[bool, int]],
                                                         contact: int) -> None:
    try:
        graph = parse(raw)
    except InvalidJourney:
        return
    who = ContactView(contact, {})
    at = advance(graph, 1, 1, who, {"event": "go", "properties": {"n": 0}}, "t", Status.READY, NOW)
    for event_arrives, n in steps:
        assert at.status is not Status.FAILED
        assert len(at.visits) <= 2 * len(graph.nodes) + 2
        if at.status not in (Status.SLEEPING, Status.WAITING):
            break
        if event_arrives and at.status is Status.WAITING:
            target = on_event(graph, at.node, who, {"event": "e", "properties": {"n": n}})
            assert target is not None
            at = advance(graph, 1, 1, who, {"event": "go", "properties": {"n": n}}, target, Status.READY, NOW)
        else:
            at = advance(graph, 1, 1, who, {"event": "go", "properties": {"n": n}}, at.node, at.status,
                         at.wake_at or NOW)
    assert at.status is not Status.FAILED


def test_a_grant_node_gives_points_or_one_coupon() -> None:
    graph = cart()
    graph["nodes"][4] = {"id": "offer", "type": "grant", "coupon_template_id": 9, "next": "sms"}
    moved = advance(parse(graph), 1, 1, ALICE, {}, "paid2", Status.WAITING, NOW)
    grants = [e for e in moved.effects if e.kind == "grant"]
    assert [(e.node, e.payload["coupon_template_id"], e.payload["program_id"]) for e in grants] == [("offer", 9, None)]
    points = advance(parse(cart()), 1, 1, ALICE, {}, "paid2", Status.WAITING, NOW)
    assert [dict(e.payload) for e in points.effects if e.kind == "grant"] == [
        {"program_id": 1, "amount": 100, "coupon_template_id": None}]
