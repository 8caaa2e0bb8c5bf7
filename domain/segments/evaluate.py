"""Evaluate a parsed segment rule against one contact's facts, in Python.

This is the meaning of every operator written down once: the Postgres and Elasticsearch backends are
tested against it. Journeys can also use it to check a single contact without a query.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.segments.rules import (
    NEGATIONS,
    All,
    AnyOf,
    Condition,
    EventCondition,
    InSegment,
    Node,
    Not,
    Relative,
    count_matches,
    resolve,
    resolve_day,
    window_start,
)


@dataclass(frozen=True)
class Occurrence:
    event: str
    timestamp: datetime
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContactFacts:
    fields: dict[str, Any] = field(default_factory=dict)  # id, user_id, email, ..., created_at, last_seen_at
    traits: dict[str, Any] = field(default_factory=dict)
    identities: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)
    events: list[Occurrence] = field(default_factory=list)
    segments: set[int] = field(default_factory=set)


def matches(node: Node, facts: ContactFacts, now: datetime) -> bool:
    if isinstance(node, All):
        return all(matches(n, facts, now) for n in node.items)
    if isinstance(node, AnyOf):
        return any(matches(n, facts, now) for n in node.items)
    if isinstance(node, Not):
        return not matches(node.item, facts, now)
    if isinstance(node, InSegment):
        return node.segment_id in facts.segments
    if isinstance(node, EventCondition):
        return _event(node, facts, now)
    return _condition(node, _contact_values(node, facts), now)


def occurrence_matches(node: Node, occurrence: Occurrence, now: datetime) -> bool:
    """A `where` tree over one event's properties and context."""
    if isinstance(node, All):
        return all(occurrence_matches(n, occurrence, now) for n in node.items)
    if isinstance(node, AnyOf):
        return any(occurrence_matches(n, occurrence, now) for n in node.items)
    if isinstance(node, Not):
        return not occurrence_matches(node.item, occurrence, now)
    assert isinstance(node, Condition)
    doc = occurrence.properties if node.field.root == "properties" else occurrence.context
    return _condition(node, lax(doc, node.field.path), now)


def lax(doc: Any, path: tuple[str, ...]) -> list[Any]:
    """Values at `path`, unwrapping arrays one level as SQL/JSON lax mode and Elasticsearch both do."""
    current = [doc]
    for key in path:
        found = []
        for value in current:
            for item in (value if isinstance(value, list) else [value]):
                if isinstance(item, dict) and key in item:
                    found.append(item[key])
        current = found
    return [v for value in current for v in (value if isinstance(value, list) else [value])]


def _contact_values(node: Condition, facts: ContactFacts) -> list[Any]:
    ref = node.field
    if ref.root == "traits":
        return lax(facts.traits, ref.path)
    if ref.root == "identities":
        return list(facts.identities.get(ref.path[0], []))
    source = facts.scores if ref.root == "scores" else facts.fields
    value = source.get(ref.path[0])
    return [] if value is None else [value]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "datetime"
    return "other"


def _compare(op: str, candidate: Any, value: Any) -> bool:
    if _kind(candidate) != _kind(value):
        return False
    if op == "eq":
        return bool(candidate == value)
    if _kind(value) == "boolean":
        return False
    return bool({"gt": candidate > value, "gte": candidate >= value, "lt": candidate < value,
                 "lte": candidate <= value}[op])


def _holds(op: str, candidate: Any, value: Any, now: datetime) -> bool:
    if op == "exists":  # a scalar value (or array of them); objects and nulls do not count
        return _kind(candidate) in ("boolean", "number", "string", "datetime")
    if isinstance(candidate, datetime):
        if op == "within_last":
            return candidate >= resolve(value, now)
        if op == "between":
            return resolve(value[0], now) <= candidate <= resolve(value[1], now)
        moment = resolve(value, now)
        return candidate < moment if op == "before" else candidate > moment
    if op == "in":
        return any(_compare("eq", candidate, v) for v in value)
    if op == "between":
        return _compare("gte", candidate, value[0]) and _compare("lte", candidate, value[1])
    if op == "contains":
        return isinstance(candidate, str) and value in candidate
    if op == "starts_with":
        return isinstance(candidate, str) and candidate.startswith(value)
    return _compare(op, candidate, value)


def _condition(node: Condition, candidates: list[Any], now: datetime) -> bool:
    op = NEGATIONS.get(node.op, node.op)
    found = any(_holds(op, c, node.value, now) for c in candidates)
    return not found if op != node.op else found


def _event(node: EventCondition, facts: ContactFacts, now: datetime) -> bool:
    days = sorted((o.timestamp.astimezone(UTC).date() for o in facts.events
                   if o.event == node.event and (node.where is None or occurrence_matches(node.where, o, now))),
                  reverse=True)
    if node.count is not None:
        since = window_start(node.within_days, now) if node.within_days is not None else None
        n = sum(1 for d in days if since is None or d >= since)
        if not count_matches(node.count, n):
            return False
    if node.last is not None:
        if not days:
            return False
        last, op, value = days[0], node.last.op, node.last.value
        if op == "within_last":
            return last >= resolve_day(Relative(value.seconds), now)
        bound = resolve_day(value, now)
        return last < bound if op == "before" else last > bound
    return True
