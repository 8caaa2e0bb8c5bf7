"""A journey as data: a versioned JSON graph of nodes, parsed into typed values and validated on save.

Validation names the node (`node 'w1': ...`) so the API answers 422 with it: unknown node types, dangling or
unreachable nodes, cycles that pass no wait (a contact would loop forever in one batch), invalid CEL (compiled
through `domain.rules`), a send whose chain lacks content. The runtime interprets the parsed graph
(`domain.journeys.interpreter`); a new node kind is a new case there, never a new workflow.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from domain.errors import DomainError
from domain.rules import InvalidExpression, compile_expression

MAX_NODES = 200
MAX_SECONDS = 366 * 86400
MAX_AMOUNT = 2**31 - 1
NODE_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
TIME_OF_DAY = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
CHANNELS = ("email", "sms", "push", "wechat", "webhook", "inbox", "bench")


class InvalidJourney(DomainError):
    title = "Invalid journey"


class Reentry(StrEnum):
    ONCE = "once"
    PER_DAYS = "per_days"
    EVERY_TIME = "every_time"


@dataclass(frozen=True)
class Trigger:
    """How contacts enter: an event (name + CEL over `event` and `contact`), or a segment entered/exited (the
    `segment_entered`/`segment_exited` events segments emit), or a date trait (e.g. `birthday`, once a year)."""

    id: str
    next: str
    event: str | None = None
    when: str | None = None
    segment_id: int | None = None
    date_trait: str | None = None


@dataclass(frozen=True)
class Wait:
    id: str
    next: str
    seconds: int | None = None
    until: str | None = None  # "HH:MM" in the contact's time zone


@dataclass(frozen=True)
class WaitForEvent:
    id: str
    event: str
    timeout_seconds: int
    next: str
    timeout_next: str
    when: str | None = None


@dataclass(frozen=True)
class Condition:
    id: str
    when: str
    yes: str
    no: str


@dataclass(frozen=True)
class Branch:
    percent: int
    next: str


@dataclass(frozen=True)
class Split:
    """A/B branches by percentage; the rest (100 - sum) is the holdout, which exits as `holdout`."""

    id: str
    branches: tuple[Branch, ...]


@dataclass(frozen=True)
class Send:
    id: str
    next: str
    chain: tuple[str, ...]
    content: Mapping[str, Mapping[str, Any]]
    topic: str | None = None


@dataclass(frozen=True)
class UpdateContact:
    id: str
    next: str
    traits: Mapping[str, Any]


@dataclass(frozen=True)
class Grant:
    """A reward: `amount` points of a program (a ledger credit), or one coupon of a coupon template."""

    id: str
    next: str
    program_id: int | None = None
    amount: int | None = None
    coupon_template_id: int | None = None


@dataclass(frozen=True)
class Exit:
    id: str


Node = Trigger | Wait | WaitForEvent | Condition | Split | Send | UpdateContact | Grant | Exit
WAITING = (Wait, WaitForEvent)


@dataclass(frozen=True)
class Goal:
    event: str
    when: str | None = None


@dataclass(frozen=True)
class Graph:
    nodes: Mapping[str, Node]
    trigger: Trigger
    reentry: Reentry = Reentry.ONCE
    reentry_days: int | None = None
    goal: Goal | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]


def successors(node: Node) -> list[str]:
    if isinstance(node, Trigger | Wait | Send | UpdateContact | Grant):
        return [node.next]
    if isinstance(node, WaitForEvent):
        return [node.next, node.timeout_next]
    if isinstance(node, Condition):
        return [node.yes, node.no]
    if isinstance(node, Split):
        return [b.next for b in node.branches]
    return []


# ---- parsing ----------------------------------------------------------------------------------------------

def _where(node_id: str) -> str:
    return f"node {node_id!r}"


def _str(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True, limit: int = 200) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidJourney(f"{where}: `{key}` must be a non-empty string of at most {limit} characters")
    return value


def _int(raw: Mapping[str, Any], key: str, where: str, lo: int, hi: int) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise InvalidJourney(f"{where}: `{key}` must be an integer from {lo} to {hi}")
    return value


def _cel(raw: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    expression = _str(raw, key, where, required=required, limit=4000)
    if expression is not None:
        try:
            compile_expression(expression)
        except InvalidExpression as exc:
            raise InvalidJourney(f"{where}: `{key}`: {exc}") from exc
    return expression


def _next(raw: Mapping[str, Any], key: str, where: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not NODE_ID.match(value):
        raise InvalidJourney(f"{where}: `{key}` must name the node that follows")
    return value


def _content(raw: Mapping[str, Any], chain: tuple[str, ...], where: str) -> dict[str, dict[str, Any]]:
    content = raw.get("content")
    if not isinstance(content, dict):
        raise InvalidJourney(f"{where}: `content` must map each channel of the chain to its message")
    out: dict[str, dict[str, Any]] = {}
    for channel in chain:
        message = content.get(channel)
        if not isinstance(message, dict) or not message:
            raise InvalidJourney(f"{where}: missing content for channel {channel!r}")
        if channel == "email" and not (isinstance(message.get("subject"), str) and message["subject"].strip()):
            raise InvalidJourney(f"{where}: the email content needs a `subject`")
        if channel in ("email", "sms", "push", "inbox") and not any(
                isinstance(message.get(k), str) and message[k].strip() for k in ("text", "html")):
            raise InvalidJourney(f"{where}: the {channel} content needs a `text`")
        out[channel] = dict(message)
    return out


def parse_node(raw: Any) -> Node:
    if not isinstance(raw, dict):
        raise InvalidJourney("every node must be a JSON object with an `id` and a `type`")
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not NODE_ID.match(node_id):
        raise InvalidJourney(f"node {node_id!r}: `id` must be 1-40 letters, digits, '_' or '-'")
    where = _where(node_id)
    kind = raw.get("type")
    if kind == "trigger":
        segment = raw.get("segment_id")
        date_trait = _str(raw, "date_trait", where, required=False, limit=100)
        event = _str(raw, "event", where, required=False)
        if segment is not None:
            segment = _int(raw, "segment_id", where, 1, 2**63 - 1024)
            on = raw.get("on", "entered")
            if on not in ("entered", "exited"):
                raise InvalidJourney(f"{where}: `on` must be 'entered' or 'exited'")
            event = f"segment_{on}"
        if sum(x is not None for x in (event, date_trait)) != 1:
            raise InvalidJourney(f"{where}: a trigger needs exactly one of `event`, `segment_id` or `date_trait`")
        return Trigger(node_id, _next(raw, "next", where), event, _cel(raw, "when", where), segment, date_trait)
    if kind == "wait":
        until = _str(raw, "until", where, required=False, limit=5)
        if until is not None and not TIME_OF_DAY.match(until):
            raise InvalidJourney(f"{where}: `until` must be a time of day 'HH:MM'")
        seconds = _int(raw, "seconds", where, 1, MAX_SECONDS) if raw.get("seconds") is not None else None
        if (seconds is None) == (until is None):
            raise InvalidJourney(f"{where}: a wait needs exactly one of `seconds` or `until`")
        return Wait(node_id, _next(raw, "next", where), seconds, until)
    if kind == "wait_for_event":
        return WaitForEvent(node_id, _str(raw, "event", where) or "",
                            _int(raw, "timeout_seconds", where, 1, MAX_SECONDS), _next(raw, "next", where),
                            _next(raw, "timeout_next", where), _cel(raw, "when", where))
    if kind == "condition":
        return Condition(node_id, _cel(raw, "when", where, required=True) or "", _next(raw, "yes", where),
                         _next(raw, "no", where))
    if kind == "split":
        branches = raw.get("branches")
        if not isinstance(branches, list) or not 1 <= len(branches) <= 10:
            raise InvalidJourney(f"{where}: `branches` must list 1 to 10 branches")
        parsed = tuple(Branch(_int(b if isinstance(b, dict) else {}, "percent", where, 1, 100),
                              _next(b if isinstance(b, dict) else {}, "next", where)) for b in branches)
        if sum(b.percent for b in parsed) > 100:
            raise InvalidJourney(f"{where}: branch percentages add up to more than 100")
        return Split(node_id, parsed)
    if kind == "send":
        chain = raw.get("chain")
        if not isinstance(chain, list) or not 1 <= len(chain) <= 5 or any(c not in CHANNELS for c in chain) \
                or len(set(chain)) != len(chain):
            raise InvalidJourney(f"{where}: `chain` must list 1 to 5 distinct channels of {', '.join(CHANNELS)}")
        return Send(node_id, _next(raw, "next", where), tuple(chain), _content(raw, tuple(chain), where),
                    _str(raw, "topic", where, required=False, limit=100))
    if kind == "update_contact":
        traits = raw.get("traits")
        if not isinstance(traits, dict) or not traits:
            raise InvalidJourney(f"{where}: `traits` must be a non-empty object")
        return UpdateContact(node_id, _next(raw, "next", where), dict(traits))
    if kind == "grant":
        if raw.get("coupon_template_id") is not None:
            if raw.get("program_id") is not None or raw.get("amount") is not None:
                raise InvalidJourney(f"{where}: a grant gives points (`program_id`, `amount`) or a coupon "
                                     "(`coupon_template_id`), not both")
            return Grant(node_id, _next(raw, "next", where),
                         coupon_template_id=_int(raw, "coupon_template_id", where, 1, 2**63 - 1024))
        return Grant(node_id, _next(raw, "next", where), _int(raw, "program_id", where, 1, 2**63 - 1024),
                     _int(raw, "amount", where, 1, MAX_AMOUNT))
    if kind == "exit":
        return Exit(node_id)
    raise InvalidJourney(f"{where}: unknown node type {kind!r}; use trigger, wait, wait_for_event, condition, split, "
                         "send, update_contact, grant or exit")


def parse(raw: Any) -> Graph:
    """The validated graph of a JSON document; InvalidJourney naming the node otherwise."""
    if not isinstance(raw, dict):
        raise InvalidJourney("a journey graph must be a JSON object with `nodes`")
    items = raw.get("nodes")
    if not isinstance(items, list) or not 2 <= len(items) <= MAX_NODES:
        raise InvalidJourney(f"`nodes` must list 2 to {MAX_NODES} nodes (a trigger and what follows)")
    nodes: dict[str, Node] = {}
    for item in items:
        node = parse_node(item)
        if node.id in nodes:
            raise InvalidJourney(f"{_where(node.id)}: the id is used twice")
        nodes[node.id] = node
    triggers = [n for n in nodes.values() if isinstance(n, Trigger)]
    if len(triggers) != 1:
        raise InvalidJourney("a journey needs exactly one trigger node")
    for node in nodes.values():
        for target in successors(node):
            if target not in nodes:
                raise InvalidJourney(f"{_where(node.id)}: leads to {target!r}, which is not a node")
            if isinstance(nodes[target], Trigger):
                raise InvalidJourney(f"{_where(node.id)}: leads back to the trigger")
    trigger = triggers[0]
    reachable = _reachable(nodes, trigger.id)
    for node_id in nodes:
        if node_id not in reachable:
            raise InvalidJourney(f"{_where(node_id)}: unreachable from the trigger")
    loop = _cycle_without_wait(nodes, trigger.id)
    if loop is not None:
        raise InvalidJourney(f"{_where(loop)}: is on a cycle that passes no wait; add a wait to the loop")
    reentry, days = _reentry(raw.get("reentry"))
    goal = None
    if raw.get("goal") is not None:
        g = raw["goal"]
        if not isinstance(g, dict):
            raise InvalidJourney("goal: must be an object with an `event`")
        goal = Goal(_str(g, "event", "goal") or "", _cel(g, "when", "goal"))
    return Graph(nodes, trigger, reentry, days, goal)


def _reentry(raw: Any) -> tuple[Reentry, int | None]:
    if raw is None:
        return Reentry.ONCE, None
    if not isinstance(raw, dict) or raw.get("policy") not in {r.value for r in Reentry}:
        raise InvalidJourney("reentry: `policy` must be once, per_days or every_time")
    policy = Reentry(raw["policy"])
    if policy is Reentry.PER_DAYS:
        return policy, _int(raw, "days", "reentry", 1, 3650)
    return policy, None


def _reachable(nodes: Mapping[str, Node], start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for target in successors(nodes[todo.pop()]):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _cycle_without_wait(nodes: Mapping[str, Node], start: str) -> str | None:
    """A node on a cycle made only of non-waiting nodes (a contact would loop inside one batch), or None."""
    instant = {k: [t for t in successors(n)] for k, n in nodes.items() if not isinstance(n, WAITING)}
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node_id: str) -> str | None:
        state[node_id] = 1
        for target in instant.get(node_id, []):
            if target not in instant:
                continue
            if state.get(target) == 1:
                return target
            if target not in state:
                found = visit(target)
                if found is not None:
                    return found
        state[node_id] = 2
        return None

    for node_id in instant:
        if node_id not in state:
            found = visit(node_id)
            if found is not None:
                return found
    return None

