"""Segment rules: the JSON condition tree, its strict validation, and what each operator means.

A rule is parsed once into frozen nodes; backends (store/segments.py, store/segments_es.py) compile
the nodes, and domain/segments_eval.py evaluates them in Python as the reference both must agree with.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from domain.errors import DomainError
from domain.rules import cel_to_tree

MAX_DEPTH = 12
MAX_CONDITIONS = 200
# A count inside a time window may ask for at most this many occurrences: the Elasticsearch backend
# stores the days of each contact's latest MAX_WINDOW_COUNT + 1 occurrences per event stream.
MAX_WINDOW_COUNT = 20
BIGINT_MAX = 2**63 - 1  # segment ids and counts are compared with bigint values in SQL

Kind = Literal["string", "number", "datetime", "json"]

CONTACT_FIELDS: dict[str, Kind] = {
    "id": "number", "user_id": "string", "email": "string", "phone": "string", "timezone": "string",
    "created_at": "datetime", "updated_at": "datetime", "last_seen_at": "datetime",
}
IDENTITY_KINDS = ("user_id", "anonymous_id", "email", "phone", "wechat_openid", "device_id")
SCORE_FIELDS: dict[str, Kind] = {
    "lead_score": "number", "lifecycle_stage": "string", "rfm_tier": "string",
    "recency_days": "number", "frequency": "number", "monetary": "number", "churn_risk": "number",
}
EVENT_FIELD_ROOTS = ("properties", "context")

SCALAR_OPS = {"eq", "neq", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with", "between",
              "exists", "not_exists"}
DATE_OPS = {"before", "after", "within_last", "between", "exists", "not_exists"}
COUNT_OPS = {"eq", "neq", "gt", "gte", "lt", "lte", "between"}
ALL_OPS = SCALAR_OPS | DATE_OPS
NEGATIONS = {"neq": "eq", "not_in": "in", "not_exists": "exists"}
DURATION = re.compile(r"^(\d{1,5})([mhdw])$")
# Membership changes are also emitted as these track events; rules test membership with {"segment": id}.
SEGMENT_EVENTS = ("segment_entered", "segment_exited")
UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InvalidRule(DomainError):
    title = "Invalid segment rule"


# ---- nodes -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldRef:
    root: Literal["contact", "traits", "identities", "scores", "properties", "context"]
    path: tuple[str, ...]
    kind: Kind

    @property
    def name(self) -> str:
        return ".".join(self.path) if self.root == "contact" else ".".join((self.root, *self.path))


@dataclass(frozen=True)
class Relative:
    """A moment relative to evaluation time: `seconds` before now."""

    seconds: int

    @property
    def days(self) -> int:
        return self.seconds // 86400


Moment = datetime | Relative


@dataclass(frozen=True)
class Condition:
    field: FieldRef
    op: str
    value: Any = None  # scalar, tuple of scalars, (lo, hi), Moment, or Relative for within_last


@dataclass(frozen=True)
class Count:
    op: str
    value: int | tuple[int, int]


@dataclass(frozen=True)
class EventCondition:
    event: str
    where: Node | None  # over properties/context of each occurrence
    within_days: int | None  # whole UTC days: occurrences on day >= today - within_days
    count: Count | None
    last: Condition | None  # op over the UTC day of the latest matching occurrence
    source: str = ""  # canonical JSON of (event, where): the stream key for indexes

    @property
    def stream(self) -> str:
        import hashlib

        return "s" + hashlib.sha1(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class InSegment:
    segment_id: int


@dataclass(frozen=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = All | AnyOf | Not | Condition | EventCondition | InSegment


# ---- parsing -----------------------------------------------------------------------------------

def parse_rule(raw: Any) -> Node:
    """Validate a JSON rule tree and return its nodes; InvalidRule names the first problem and where."""
    counter = [0]
    return _node(raw, "rule", 0, counter, event_scope=False)


def _fail(where: str, message: str) -> InvalidRule:
    return InvalidRule(f"{where}: {message}")


def _node(raw: Any, where: str, depth: int, counter: list[int], *, event_scope: bool) -> Node:
    if depth > MAX_DEPTH:
        raise _fail(where, f"rules nest at most {MAX_DEPTH} levels deep")
    counter[0] += 1
    if counter[0] > MAX_CONDITIONS:
        raise _fail(where, f"a rule has at most {MAX_CONDITIONS} conditions")
    if not isinstance(raw, dict):
        raise _fail(where, "expected an object such as {\"field\": ..., \"op\": ..., \"value\": ...}, "
                           f"got {_show(raw)}")
    for group in ("and", "or"):
        if group in raw:
            _only(raw, {group}, where)
            items = raw[group]
            if not isinstance(items, list) or not items:
                raise _fail(f"{where}.{group}", "expected a non-empty list of conditions")
            nodes = tuple(_node(x, f"{where}.{group}[{i}]", depth + 1, counter, event_scope=event_scope)
                          for i, x in enumerate(items))
            return All(nodes) if group == "and" else AnyOf(nodes)
    if "not" in raw:
        _only(raw, {"not"}, where)
        return Not(_node(raw["not"], f"{where}.not", depth + 1, counter, event_scope=event_scope))
    if "event" in raw:
        if event_scope:
            raise _fail(where, "event conditions cannot be nested inside an event's `where`")
        return _event(raw, where, depth, counter)
    if "segment" in raw:
        if event_scope:
            raise _fail(where, "segment membership cannot be tested inside an event's `where`")
        _only(raw, {"segment"}, where)
        sid = raw["segment"]
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid <= BIGINT_MAX:
            raise _fail(f"{where}.segment", f"expected a segment id (positive integer), got {_show(sid)}")
        return InSegment(sid)
    if "field" in raw:
        return _condition(raw, where, event_scope=event_scope)
    raise _fail(where, f"unknown condition with keys {sorted(raw)}; use one of and, or, not, field, event, segment")


def _only(raw: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = set(raw) - allowed
    if extra:
        raise _fail(where, f"unexpected key(s) {sorted(extra)} next to {sorted(allowed)}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def field_ref(name: Any, where: str, *, event_scope: bool) -> FieldRef:
    if not isinstance(name, str) or not name:
        raise _fail(where, f"expected a field name, got {_show(name)}")
    head, _, rest = name.partition(".")
    if event_scope:
        if head not in EVENT_FIELD_ROOTS or not rest:
            raise _fail(where, f"unknown event field {name!r}; use properties.<name> or context.<name>")
        return FieldRef(head, _path(rest, name, where), "json")  # type: ignore[arg-type]
    if name in CONTACT_FIELDS:
        return FieldRef("contact", (name,), CONTACT_FIELDS[name])
    if head == "traits" and rest:
        return FieldRef("traits", _path(rest, name, where), "json")
    if head == "identities" and rest in IDENTITY_KINDS:
        return FieldRef("identities", (rest,), "string")
    if head == "scores" and rest in SCORE_FIELDS:
        return FieldRef("scores", (rest,), SCORE_FIELDS[rest])
    known = ", ".join([*CONTACT_FIELDS, "traits.<name>", *(f"identities.{k}" for k in IDENTITY_KINDS),
                       *(f"scores.{k}" for k in SCORE_FIELDS)])
    raise _fail(where, f"unknown field {name!r}; known fields: {known}")


def _path(rest: str, name: str, where: str) -> tuple[str, ...]:
    parts = tuple(rest.split("."))
    if any(not p for p in parts):
        raise _fail(where, f"field {name!r} has an empty path segment")
    return parts


def _condition(raw: dict[str, Any], where: str, *, event_scope: bool) -> Condition:
    _only(raw, {"field", "op", "value"}, where)
    ref = field_ref(raw["field"], f"{where}.field", event_scope=event_scope)
    if "op" not in raw:
        raise _fail(where, "missing `op`")
    return _operator(ref, raw["op"], raw.get("value"), "value" in raw, where)


def _operator(ref: FieldRef, op: Any, value: Any, has_value: bool, where: str) -> Condition:
    allowed = DATE_OPS if ref.kind == "datetime" else SCALAR_OPS
    if op not in ALL_OPS:
        raise _fail(f"{where}.op", f"unknown operator {_show(op)}; use one of {', '.join(sorted(allowed))}")
    if op not in allowed:
        raise _fail(f"{where}.op", f"operator {op!r} does not apply to {ref.kind} field {ref.name!r}; "
                                   f"use one of {', '.join(sorted(allowed))}")
    here = f"{where}.value"
    if op in ("exists", "not_exists"):
        if has_value and value is not None:
            raise _fail(here, f"operator {op!r} takes no value")
        return Condition(ref, op)
    if not has_value:
        raise _fail(where, f"operator {op!r} needs a `value`")
    if ref.kind == "datetime":
        return Condition(ref, op, _date_value(op, value, here))
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise _fail(here, f"operator {op!r} needs a non-empty list, got {_show(value)}")
        kinds = {_scalar_kind(v, here, ref) for v in value}
        if len(kinds) > 1:
            raise _fail(here, f"list values must all be of one type, got {sorted(kinds)}")
        return Condition(ref, op, tuple(value))
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise _fail(here, f"operator 'between' needs [low, high], got {_show(value)}")
        kinds = {_scalar_kind(v, here, ref) for v in value}
        if len(kinds) != 1 or kinds & {"boolean"}:
            raise _fail(here, "between needs two numbers or two strings")
        return Condition(ref, op, (value[0], value[1]))
    kind = _scalar_kind(value, here, ref)
    if op in ("contains", "starts_with") and kind != "string":
        raise _fail(here, f"operator {op!r} needs a string value, got {_show(value)}")
    if op in ("gt", "gte", "lt", "lte") and kind == "boolean":
        raise _fail(here, f"operator {op!r} needs a number or a string, got {_show(value)}")
    return Condition(ref, op, value)


def _scalar_kind(value: Any, where: str, ref: FieldRef) -> str:
    if isinstance(value, bool):
        kind = "boolean"
    elif isinstance(value, int | float):
        kind = "number"
    elif isinstance(value, str):
        kind = "string"
    else:
        raise _fail(where, f"expected a string, number or boolean, got {_show(value)}")
    if ref.kind in ("string", "number") and kind != ref.kind:
        raise _fail(where, f"field {ref.name!r} is a {ref.kind}; {_show(value)} is a {kind}")
    if kind == "number" and not (abs(value) < 1e15):
        raise _fail(where, f"number {_show(value)} is out of range")
    return kind


def parse_duration(value: Any, where: str) -> Relative:
    match = DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise _fail(where, f"expected a duration such as \"30m\", \"12h\", \"14d\" or \"2w\", got {_show(value)}")
    return Relative(int(match[1]) * UNIT_SECONDS[match[2]])


def parse_moment(value: Any, where: str) -> Moment:
    """An ISO-8601 date or datetime (UTC if no offset), or a duration meaning that long ago."""
    if isinstance(value, str) and DURATION.match(value):
        return parse_duration(value, where)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            moment = None
        if moment is not None:
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise _fail(where, f"expected an ISO-8601 date/datetime or a duration such as \"14d\" (that long ago), "
                       f"got {_show(value)}")


def _date_value(op: str, value: Any, where: str) -> Any:
    if op == "within_last":
        return parse_duration(value, where)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise _fail(where, f"operator 'between' needs [from, to], got {_show(value)}")
        return (parse_moment(value[0], f"{where}[0]"), parse_moment(value[1], f"{where}[1]"))
    return parse_moment(value, where)


def _event(raw: dict[str, Any], where: str, depth: int, counter: list[int]) -> EventCondition:
    _only(raw, {"event", "where", "where_cel", "within_last", "count", "last"}, where)
    name = raw["event"]
    if not isinstance(name, str) or not name or len(name) > 200:
        raise _fail(f"{where}.event", f"expected an event name, got {_show(name)}")
    if name in SEGMENT_EVENTS:
        # They are system events outside the daily aggregates, so a count of them would quietly disagree.
        raise _fail(f"{where}.event", f"{name!r} is emitted by Nudge itself; test membership with "
                                      f"{{\"segment\": <id>}} instead")
    filters: list[Node] = []
    if raw.get("where") is not None:
        filters.append(_node(raw["where"], f"{where}.where", depth + 1, counter, event_scope=True))
    if raw.get("where_cel") is not None:
        tree = cel_to_tree(raw["where_cel"], f"{where}.where_cel")
        filters.append(_node(tree, f"{where}.where_cel", depth + 1, counter, event_scope=True))
    condition: Node | None = filters[0] if len(filters) == 1 else (All(tuple(filters)) if filters else None)
    within = None
    if raw.get("within_last") is not None:
        rel = parse_duration(raw["within_last"], f"{where}.within_last")
        if rel.seconds % 86400:
            raise _fail(f"{where}.within_last", "event windows are whole days; use \"d\" or \"w\" units")
        within = rel.days
    count = _count(raw["count"], f"{where}.count", within is not None) if raw.get("count") is not None else None
    last = None
    if raw.get("last") is not None:
        spec = raw["last"]
        if not isinstance(spec, dict):
            raise _fail(f"{where}.last", "expected {\"op\": \"before\", \"value\": \"14d\"}")
        _only(spec, {"op", "value"}, f"{where}.last")
        if spec.get("op") not in ("before", "after", "within_last"):
            raise _fail(f"{where}.last.op", f"unknown operator {_show(spec.get('op'))} for the last occurrence; "
                                            "use one of before, after, within_last")
        ref = FieldRef("contact", ("last",), "datetime")
        last = _operator(ref, spec["op"], spec.get("value"), "value" in spec, f"{where}.last")
        if isinstance(last.value, Relative) and last.value.seconds % 86400:
            raise _fail(f"{where}.last.value", "event times compare whole days; use \"d\" or \"w\" units")
    if count is None and last is None:
        count = Count("gte", 1)
    source = json.dumps({"event": name, "where": raw.get("where"), "where_cel": raw.get("where_cel")},
                        sort_keys=True, separators=(",", ":"))
    return EventCondition(name, condition, within, count, last, source)


def _count(raw: Any, where: str, windowed: bool) -> Count:
    if not isinstance(raw, dict):
        raise _fail(where, "expected {\"op\": \"gte\", \"value\": 2}")
    _only(raw, {"op", "value"}, where)
    op, value = raw.get("op"), raw.get("value")
    if op not in COUNT_OPS:
        raise _fail(f"{where}.op", f"unknown count operator {_show(op)}; use one of {', '.join(sorted(COUNT_OPS))}")
    if op == "between" and (not isinstance(value, list) or len(value) != 2):
        raise _fail(f"{where}.value", "between needs [low, high]")
    values: list[Any] = list(value) if isinstance(value, list) else [value]
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= BIGINT_MAX:
            raise _fail(f"{where}.value", f"counts are non-negative integers up to {BIGINT_MAX}, got {_show(v)}")
        if windowed and v > MAX_WINDOW_COUNT:
            raise _fail(f"{where}.value", f"a count inside a time window can test up to {MAX_WINDOW_COUNT} "
                                          f"occurrences; use a count without `within_last` for more")
    return Count(op, (values[0], values[1]) if op == "between" else values[0])


# ---- meaning shared by backends ---------------------------------------------------------------

def resolve(moment: Moment, now: datetime) -> datetime:
    return now - timedelta(seconds=moment.seconds) if isinstance(moment, Relative) else moment


def resolve_day(moment: Moment, now: datetime) -> date:
    """Event-time conditions compare UTC days; a relative moment counts whole days back from today."""
    if isinstance(moment, Relative):
        return now.astimezone(UTC).date() - timedelta(days=moment.days)
    return moment.astimezone(UTC).date()


def window_start(within_days: int, now: datetime) -> date:
    return now.astimezone(UTC).date() - timedelta(days=within_days)


def count_matches(count: Count, n: int) -> bool:
    if count.op == "between":
        lo, hi = count.value  # type: ignore[misc]
        return lo <= n <= hi
    v = count.value
    return {"eq": n == v, "neq": n != v, "gt": n > v, "gte": n >= v, "lt": n < v, "lte": n <= v}[count.op]  # type: ignore[operator]


def referenced_segments(node: Node) -> set[int]:
    if isinstance(node, InSegment):
        return {node.segment_id}
    if isinstance(node, All | AnyOf):
        return set().union(*(referenced_segments(n) for n in node.items))
    if isinstance(node, Not):
        return referenced_segments(node.item)
    return set()


def event_conditions(node: Node) -> list[EventCondition]:
    if isinstance(node, EventCondition):
        return [node]
    if isinstance(node, All | AnyOf):
        return [e for n in node.items for e in event_conditions(n)]
    if isinstance(node, Not):
        return event_conditions(node.item)
    return []


def is_time_based(node: Node) -> bool:
    """True if membership can change with the clock alone, so a periodic full refresh is needed."""
    if isinstance(node, EventCondition):
        return node.within_days is not None or node.last is not None
    if isinstance(node, Condition):
        return isinstance(node.value, Relative) or (
            isinstance(node.value, tuple) and any(isinstance(v, Relative) for v in node.value))
    if isinstance(node, All | AnyOf):
        return any(is_time_based(n) for n in node.items)
    if isinstance(node, Not):
        return is_time_based(node.item)
    return False


def dependents(segment_id: int, references: dict[int, set[int]]) -> set[int]:
    """Segments whose rules name `segment_id`, directly or through other segments (it excluded)."""
    found: set[int] = set()
    frontier = {segment_id}
    while frontier:
        frontier = {sid for sid, named in references.items() if named & frontier and sid not in found}
        found |= frontier
    found.discard(segment_id)
    return found


def transition_message_id(segment_id: int, contact_id: int, kind: str, transition_id: int) -> str:
    """The event message id of a membership change: business ids only, so a retried refresh (whose
    transitions rolled back with it) can never emit the same change twice. store/segments.py builds
    the same string in SQL."""
    return f"segment:{segment_id}:{contact_id}:{kind.removeprefix('segment_')}:{transition_id}"


def check_no_cycle(segment_id: int, references: dict[int, set[int]]) -> None:
    """`references` maps each rule segment to the segments its rule names (including segment_id's new rule)."""
    seen: set[int] = set()
    stack: list[tuple[int, tuple[int, ...]]] = [(segment_id, (segment_id,))]
    while stack:
        current, trail = stack.pop()
        for nxt in references.get(current, set()):
            if nxt == segment_id:
                chain = " → ".join(str(s) for s in (*trail, nxt))
                raise InvalidRule(f"rule: segment membership forms a cycle ({chain})")
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, (*trail, nxt)))


def refresh_order(references: dict[int, set[int]]) -> list[int]:
    """Segments ordered so that every segment comes after the segments its rule names."""
    order: list[int] = []
    done: set[int] = set()

    def visit(sid: int, active: frozenset[int]) -> None:
        if sid in done or sid in active:
            return
        for dep in sorted(references.get(sid, set())):
            visit(dep, active | {sid})
        done.add(sid)
        order.append(sid)

    for sid in sorted(references):
        visit(sid, frozenset())
    return order
