"""Compile a parsed segment rule into one parameterised SQL predicate over `contacts c`.

Every user value travels as a bind parameter: JSON conditions become SQL/JSON path expressions that are
themselves parameters (`c.traits @? CAST(:p1 AS jsonpath)`), whose lax mode unwraps arrays and compares
with strict types exactly as domain/segments_eval.py says. Event aggregates are semi-joins on the
rollup `contact_event_recent` (no property filter) or `events` (with one), optionally limited to touched contacts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.segments.rules import (
    NEGATIONS,
    All,
    AnyOf,
    Condition,
    Count,
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

SCORE_COLUMNS = {"lead_score", "lifecycle_stage", "rfm_tier", "recency_days", "frequency", "monetary", "churn_risk"}
CONTACT_COLUMNS = {"id", "user_id", "email", "phone", "timezone", "created_at", "updated_at", "last_seen_at"}
SQL_OPS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "before": "<", "after": ">", "within_last": ">="}
PATH_OPS = {"eq": "==", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


@dataclass
class CompiledRule:
    where: str
    params: dict[str, Any] = field(default_factory=dict)


class _Compiler:
    def __init__(self, now: datetime, scope: str | None) -> None:
        self.now = now
        self.scope = scope  # name of a bigint[] parameter limiting event subqueries to touched contacts
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"r{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def node(self, node: Node) -> str:
        if isinstance(node, All):
            return "(" + " AND ".join(self.node(n) for n in node.items) + ")"
        if isinstance(node, AnyOf):
            return "(" + " OR ".join(self.node(n) for n in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.node(node.item)})"
        if isinstance(node, InSegment):
            return (f"EXISTS (SELECT 1 FROM segment_members m WHERE m.segment_id = {self.param(node.segment_id)}"
                    f" AND m.contact_id = c.id AND m.exited_at IS NULL)")
        if isinstance(node, EventCondition):
            return self.event(node)
        return self.condition(node)

    # -- field conditions: the positive form, negated as a whole so missing values count as "not equal"
    def condition(self, node: Condition) -> str:
        op = NEGATIONS.get(node.op, node.op)
        ref = node.field
        if ref.root in ("traits", "properties", "context"):
            column = {"traits": "c.traits", "properties": "e.properties", "context": "e.context"}[ref.root]
            if op == "eq" and len(ref.path) == 1:
                # Same meaning as the path below for a top-level key (the value, or an element of an array
                # value), but containment is cheaper to recheck after the GIN index scan.
                key, value = ref.path[0], node.value
                positive = (f"({column} @> CAST({self.param(json.dumps({key: value}))} AS jsonb)"
                            f" OR {column} @> CAST({self.param(json.dumps({key: [value]}))} AS jsonb))")
            else:
                positive = f"{column} @? CAST({self.param(jsonpath(ref.path, op, node.value))} AS jsonpath)"
        elif ref.root == "identities":
            test = self.scalar("i.value", op, node.value)
            positive = (f"EXISTS (SELECT 1 FROM identities i WHERE i.contact_id = c.id"
                        f" AND i.kind = {self.param(ref.path[0])} AND {test})")
        elif ref.root == "scores":
            assert ref.path[0] in SCORE_COLUMNS
            test = self.scalar(f"s.{ref.path[0]}", op, node.value)
            positive = f"EXISTS (SELECT 1 FROM contact_scores s WHERE s.contact_id = c.id AND {test})"
        else:
            assert ref.path[0] in CONTACT_COLUMNS
            positive = self.scalar(f"c.{ref.path[0]}", op, node.value)
        return f"(NOT {positive})" if op != node.op else f"({positive})"

    def scalar(self, column: str, op: str, value: Any) -> str:
        """A null-safe positive test on a typed column (never NULL, so NOT works as the complement)."""
        text = "COLLATE \"C\"" if isinstance(value, str) or (
            isinstance(value, tuple) and value and isinstance(value[0], str)) else ""
        if op == "exists":
            return f"{column} IS NOT NULL"
        if op == "in":
            return f"coalesce({column} = ANY({self.param(list(value))}), false)"
        if op == "contains":
            return f"coalesce(strpos({column}, {self.param(value)}) > 0, false)"
        if op == "starts_with":
            return f"coalesce(starts_with({column}, {self.param(value)}), false)"
        if op == "between":
            lo, hi = (resolve(v, self.now) if isinstance(v, datetime | Relative) else v for v in value)
            return f"coalesce({column} {text} BETWEEN {self.param(lo)} AND {self.param(hi)}, false)"
        if op == "within_last":
            value = Relative(value.seconds)
        if isinstance(value, datetime | Relative):
            value = resolve(value, self.now)
        return f"coalesce({column} {text} {SQL_OPS[op]} {self.param(value)}, false)"

    # -- event aggregates: unfiltered ones read the rollup `contact_event_recent`, filtered ones `events`
    def event(self, node: EventCondition) -> str:
        parts = []
        if node.count is not None:
            since = window_start(node.within_days, self.now) if node.within_days is not None else None
            parts.append(self.count(node, node.count, since) if node.where is not None
                         else self.rollup_count(node, node.count, since))
        if node.last is not None:
            last, value = node.last, node.last.value
            day = (resolve_day(Relative(value.seconds), self.now) if last.op == "within_last"
                   else resolve_day(value, self.now))
            if node.where is None:
                parts.append(self.rollup(node, f"r.d1 {SQL_OPS[last.op]} {self.param(day)}"))
            else:
                source, day_expr, _ = self.source(node, None)
                having = f"max({day_expr}) {SQL_OPS[last.op]} {self.param(day)}"
                parts.append(f"c.id IN (SELECT contact_id FROM {source} GROUP BY contact_id HAVING {having})")
        return "(" + " AND ".join(parts) + ")"

    def rollup(self, node: EventCondition, test: str) -> str:
        scope = f" AND r.contact_id = ANY(:{self.scope})" if self.scope else ""
        return (f"c.id IN (SELECT r.contact_id FROM contact_event_recent r"
                f" WHERE r.event = {self.param(node.event)} AND {test}{scope})")

    def rollup_count(self, node: EventCondition, count: Count, since: Any) -> str:
        """Count tests as "at least n" tests: within a window, the n-th latest day is inside it."""
        def at_least(n: int) -> str:
            if n <= 0:
                return "true"
            if since is None:
                return self.rollup(node, f"r.total >= {self.param(n)}")
            day = f"r.d{n}" if n <= 3 else f"r.more[{self.param(n - 3)}]"
            return self.rollup(node, f"{day} >= {self.param(since)}")

        if count.op == "between":
            lo, hi = count.value  # type: ignore[misc]
            return f"({at_least(lo)} AND NOT {at_least(hi + 1)})"
        v: int = count.value  # type: ignore[assignment]
        exactly = f"({at_least(v)} AND NOT {at_least(v + 1)})"
        return {"gte": at_least(v), "gt": at_least(v + 1), "lt": f"(NOT {at_least(v)})",
                "lte": f"(NOT {at_least(v + 1)})", "eq": exactly, "neq": f"(NOT {exactly})"}[count.op]

    def count(self, node: EventCondition, count: Count, since: Any) -> str:
        source, _, total = self.source(node, since)
        if count.op == "between":
            lo, hi = count.value  # type: ignore[misc]
            test = f"{total} BETWEEN {self.param(lo)} AND {self.param(hi)}"
        else:
            test = f"{total} {'<>' if count.op == 'neq' else SQL_OPS[count.op]} {self.param(count.value)}"
        if not count_matches(count, 0):
            return f"c.id IN (SELECT contact_id FROM {source} GROUP BY contact_id HAVING {test})"
        # Contacts without any occurrence pass, so exclude those whose positive count fails instead.
        return f"c.id NOT IN (SELECT contact_id FROM {source} GROUP BY contact_id HAVING NOT ({test}))"

    def source(self, node: EventCondition, since: Any) -> tuple[str, str, str]:
        """(FROM clause with WHERE, UTC day expression, total count expression)."""
        if node.where is None:
            clauses = [f"d.event = {self.param(node.event)}"]
            if since is not None:
                clauses.append(f"d.day >= {self.param(since)}")
            if self.scope:
                clauses.append(f"d.contact_id = ANY(:{self.scope})")
            return f"contact_event_daily d WHERE {' AND '.join(clauses)}", "d.day", "sum(d.count)"
        if node.event in ("$page", "$screen"):
            clauses = [f"e.type = {self.param(node.event[1:])}"]
        else:
            clauses = ["e.type = 'track'", f"e.event = {self.param(node.event)}"]
        if since is not None:
            start = datetime(since.year, since.month, since.day, tzinfo=UTC)
            clauses.append(f"e.timestamp >= {self.param(start)}")
        if self.scope:
            clauses.append(f"e.contact_id = ANY(:{self.scope})")
        clauses.append(self.node(node.where))
        return (f"events e WHERE {' AND '.join(clauses)}", "(e.timestamp AT TIME ZONE 'UTC')::date", "count(*)")


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def jsonpath(path: tuple[str, ...], op: str, value: Any) -> str:
    """An SQL/JSON path (lax mode) selecting the value at `path` when it passes `op` — the positive form."""
    target = "$" + "".join("." + json.dumps(key) for key in path)
    if op == "exists":
        test = "@ != null"
    elif op == "in":
        test = " || ".join(f"@ == {_literal(v)}" for v in value)
    elif op == "between":
        test = f"@ >= {_literal(value[0])} && @ <= {_literal(value[1])}"
    elif op == "contains":
        test = f"@ like_regex {_literal(value)} flag \"q\""
    elif op == "starts_with":
        test = f"@ starts with {_literal(value)}"
    else:
        test = f"@ {PATH_OPS[op]} {_literal(value)}"
    return f"{target} ? ({test})"


def compile_rule(node: Node, now: datetime, *, scope: str | None = None) -> CompiledRule:
    """The WHERE predicate (over `contacts c`) for `node`, evaluated as of `now`."""
    compiler = _Compiler(now, scope)
    where = compiler.node(node)
    return CompiledRule(where, compiler.params)

