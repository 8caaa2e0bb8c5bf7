"""One table of rules, run against every SegmentIndex backend: each returns exactly the members the
reference evaluator (domain/segments_eval.py) says, so the backends agree with each other."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.segments.evaluate import matches
from domain.segments.rules import All, Condition, FieldRef, Node, parse_rule
from store.segments.index import PostgresSegmentIndex

WEEK_AGO = "7d"
RULES: list[tuple[str, dict[str, Any]]] = [
    ("trait eq string", {"field": "traits.plan", "op": "eq", "value": "pro"}),
    ("trait eq is case sensitive", {"field": "traits.plan", "op": "eq", "value": "Pro"}),
    ("trait eq number is typed", {"field": "traits.age", "op": "eq", "value": 34}),
    ("trait neq includes missing", {"field": "traits.plan", "op": "neq", "value": "pro"}),
    ("trait gt number", {"field": "traits.age", "op": "gt", "value": 34}),
    ("trait gte number", {"field": "traits.age", "op": "gte", "value": 34}),
    ("trait lt float", {"field": "traits.age", "op": "lt", "value": 45.5}),
    ("trait lte float", {"field": "traits.score", "op": "lte", "value": 7.5}),
    ("trait gt string by code point", {"field": "traits.name", "op": "gt", "value": "Ann"}),
    ("trait in", {"field": "traits.plan", "op": "in", "value": ["team", "free"]}),
    ("trait not_in", {"field": "traits.plan", "op": "not_in", "value": ["pro", "free"]}),
    ("trait contains", {"field": "traits.name", "op": "contains", "value": "n-M"}),
    ("trait contains with regex characters", {"field": "traits.name", "op": "contains", "value": ". (o"}),
    ("trait starts_with", {"field": "traits.plan", "op": "starts_with", "value": "p"}),
    ("trait exists", {"field": "traits.plan", "op": "exists"}),
    ("trait not_exists", {"field": "traits.plan", "op": "not_exists"}),
    ("trait between numbers", {"field": "traits.age", "op": "between", "value": [20, 45.5]}),
    ("trait between strings", {"field": "traits.plan", "op": "between", "value": ["a", "g"]}),
    ("array trait any element", {"field": "traits.tags", "op": "eq", "value": "vip"}),
    ("array trait exists", {"field": "traits.tags", "op": "exists"}),
    ("nested trait", {"field": "traits.addr.city", "op": "eq", "value": "Oslo"}),
    ("mixed-type trait as a string", {"field": "traits.age", "op": "eq", "value": "34"}),
    ("mixed-type trait compared as a string", {"field": "traits.age", "op": "gt", "value": "30"}),
    ("trait that is a string or an object", {"field": "traits.addr", "op": "eq", "value": "Oslo"}),
    ("nested path is not a dotted key", {"field": "traits.addr.city", "op": "exists"}),
    ("date-like string trait", {"field": "traits.born", "op": "starts_with", "value": "1990"}),
    ("date-like and plain strings compare as strings", {"field": "traits.born", "op": "lt", "value": "j"}),
    ("list of strings trait beside a list of objects", {"field": "traits.badges", "op": "eq", "value": "gold"}),
    ("list of objects trait", {"field": "traits.badges.kind", "op": "eq", "value": "gold"}),
    ("boolean trait", {"field": "traits.vip", "op": "eq", "value": True}),
    ("boolean trait neq", {"field": "traits.vip", "op": "neq", "value": True}),
    ("email exists", {"field": "email", "op": "exists"}),
    ("email not_exists", {"field": "email", "op": "not_exists"}),
    ("email contains", {"field": "email", "op": "contains", "value": "@example."}),
    ("email ends like", {"field": "email", "op": "starts_with", "value": "d"}),
    ("email in", {"field": "email", "op": "in", "value": ["ada@example.com", "gus@example.com"]}),
    ("email neq", {"field": "email", "op": "neq", "value": "ada@example.com"}),
    ("email gt", {"field": "email", "op": "gt", "value": "dee@shop.io"}),
    ("phone starts_with", {"field": "phone", "op": "starts_with", "value": "+44"}),
    ("created within_last", {"field": "created_at", "op": "within_last", "value": "12d"}),
    ("created before relative", {"field": "created_at", "op": "before", "value": "30d"}),
    ("created after relative", {"field": "created_at", "op": "after", "value": "30d"}),
    ("created between", {"field": "created_at", "op": "between", "value": ["150d", "20d"]}),
    ("last seen within a week", {"field": "last_seen_at", "op": "within_last", "value": WEEK_AGO}),
    ("last seen not_exists", {"field": "last_seen_at", "op": "not_exists"}),
    ("identity exists", {"field": "identities.wechat_openid", "op": "exists"}),
    ("identity not_exists", {"field": "identities.device_id", "op": "not_exists"}),
    ("identity contains", {"field": "identities.device_id", "op": "contains", "value": "d-2"}),
    ("score gt", {"field": "scores.lead_score", "op": "gt", "value": 50}),
    ("score stage in", {"field": "scores.lifecycle_stage", "op": "in", "value": ["lead", "mql"]}),
    ("score not_exists", {"field": "scores.lead_score", "op": "not_exists"}),
    ("did event", {"event": "order_paid"}),
    ("did not event", {"event": "order_paid", "count": {"op": "eq", "value": 0}}),
    ("twice in 30 days over 100", {"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 2},
                                   "where": {"field": "properties.amount", "op": "gt", "value": 100}}),
    ("fewer than 2 in a week", {"event": "order_paid", "within_last": "7d", "count": {"op": "lt", "value": 2}}),
    ("count neq", {"event": "order_paid", "count": {"op": "neq", "value": 2}}),
    ("count between in window", {"event": "login", "within_last": "3d", "count": {"op": "between", "value": [2, 4]}}),
    ("count gt in window", {"event": "order_paid", "within_last": "30d", "count": {"op": "gt", "value": 2}}),
    ("count lte in window", {"event": "order_paid", "within_last": "14d", "count": {"op": "lte", "value": 1}}),
    ("cel filter", {"event": "order_paid",
                    "where_cel": 'event.properties.currency == "USD" && event.properties.amount >= 150'}),
    ("cel not filter", {"event": "order_paid", "within_last": "60d",
                        "where_cel": '!(event.properties.amount < 100) && !has(event.properties.currency)'}),
    ("filter on nested array", {"event": "order_paid",
                                "where": {"field": "properties.items.sku", "op": "eq", "value": "b2"}}),
    ("filter on context", {"event": "order_paid",
                           "where": {"field": "context.ip", "op": "starts_with", "value": "10."}}),
    ("count 0 with filter", {"event": "order_paid", "count": {"op": "eq", "value": 0},
                             "where": {"field": "properties.amount", "op": "gte", "value": 300}}),
    ("last app_open more than 14 days ago", {"event": "app_open", "last": {"op": "before", "value": "14d"}}),
    ("last app_open within a week", {"event": "app_open", "last": {"op": "within_last", "value": "7d"}}),
    ("last order after a date", {"event": "order_paid", "last": {"op": "after", "value": "30d"}}),
    ("last filtered", {"event": "order_paid", "last": {"op": "before", "value": "7d"},
                       "where": {"field": "properties.amount", "op": "gt", "value": 100}}),
    ("count and last", {"event": "app_open", "count": {"op": "gte", "value": 2},
                        "last": {"op": "before", "value": "7d"}}),
    ("page view", {"event": "$page", "within_last": "1d"}),
    ("page view filtered", {"event": "$page", "where": {"field": "properties.path", "op": "eq", "value": "/pricing"}}),
    ("manual segment member", {"segment": "$manual"}),
    ("not in manual segment", {"not": {"segment": "$manual"}}),
    ("3 conditions", {"and": [{"field": "traits.plan", "op": "eq", "value": "pro"},
                              {"field": "created_at", "op": "within_last", "value": "60d"},
                              {"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 1}}]}),
    ("or / not", {"or": [{"not": {"field": "traits.age", "op": "exists"}},
                         {"and": [{"event": "app_open"}, {"not": {"event": "order_paid", "within_last": "7d"}}]}]}),
]


def rule_for(world: Any, raw: dict[str, Any]) -> Node:
    text = json.dumps(raw).replace('"$manual"', str(world.manual_segment_id))
    return parse_rule(json.loads(text))


def scoped(world: Any, node: Node) -> Node:
    """The rule limited to this world's contacts (other tests share the database)."""
    return All((Condition(FieldRef("traits", ("tag",), "json"), "eq", world.tag), node))


def expected(world: Any, node: Node) -> set[int]:
    return {cid for cid, facts in world.facts.items() if matches(node, facts, world.now)}


@pytest.fixture(scope="module", params=["postgres", "elasticsearch"])
async def index(request: pytest.FixtureRequest, segment_world: Any,
                sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[Any]:
    if request.param == "postgres":
        yield PostgresSegmentIndex()
        return
    from store.segments.es import ElasticsearchSegmentIndex

    es = ElasticsearchSegmentIndex(request.getfixturevalue("elasticsearch_url"),
                                   index=f"nudge-test-{segment_world.tag}")
    async with sessions() as s:
        await es.ensure_index()
        await es.index_contacts(s, segment_world.ids, rules=[rule_for(segment_world, r) for _, r in RULES])
    yield es
    await es.close()


@pytest.mark.parametrize("name, raw", RULES, ids=[n for n, _ in RULES])
async def test_backend_returns_the_reference_members(
    index: Any, segment_world: Any, sessions: async_sessionmaker[AsyncSession], name: str, raw: dict[str, Any],
) -> None:
    node = rule_for(segment_world, raw)
    want = expected(segment_world, node)
    async with sessions() as s:
        got = set(await index.page(s, scoped(segment_world, node), segment_world.now, after=0, limit=1000))
        count = await index.count(s, scoped(segment_world, node), segment_world.now)
    assert got == want, f"{name}: {index.name} returned {sorted(got)}, reference {sorted(want)}"
    assert count == len(want)


def test_the_table_is_not_trivial(segment_world: Any) -> None:
    sizes = {n: len(expected(segment_world, rule_for(segment_world, r))) for n, r in RULES}
    assert [n for n, size in sizes.items() if not 0 < size < len(segment_world.ids)] == []
