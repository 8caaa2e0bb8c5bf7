"""The one interpreter of journey graphs: where a contact goes next, and what that does.

`advance` moves one contact from where its state row stands through consecutive non-waiting nodes until it
waits (a duration, a time of day, an event) or leaves; it returns the new position, the node transitions (for
history and per-node counts) and the effects (sends, trait updates, grants) the runtime performs under the key
`journey:{journey}:{version}:{contact}:{entry}:{node}`. Pure: the runtime batches the I/O around it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from domain.journeys.graph import (
    Condition,
    Exit,
    Grant,
    Graph,
    Send,
    Split,
    Trigger,
    UpdateContact,
    Wait,
    WaitForEvent,
)
from domain.rules import evaluate, pruned
from domain.zones import zone


class Status(StrEnum):
    READY = "ready"        # execute `node` once wake_at has come
    SLEEPING = "sleeping"  # in a wait node; at wake_at go on to its next
    WAITING = "waiting"    # in a wait-for-event node; the event moves it on, wake_at is the timeout
    EXITED = "exited"      # reached an exit node
    HOLDOUT = "holdout"    # a split put it in the holdout
    CONVERTED = "converted"  # the goal event ended the journey
    FAILED = "failed"      # the graph could not be followed (never for a validated graph)


LIVE = (Status.READY, Status.SLEEPING, Status.WAITING)


@dataclass(frozen=True)
class ContactView:
    id: int
    traits: Mapping[str, Any]
    timezone: str | None = None


@dataclass(frozen=True)
class Effect:
    """A side effect of a node: `kind` is send, update or grant; `node` the node id (part of the key)."""

    kind: str
    node: str
    payload: Mapping[str, Any]


@dataclass
class Advance:
    node: str
    status: Status
    wake_at: datetime | None = None
    waiting_event: str | None = None
    visits: list[tuple[str, str]] = field(default_factory=list)  # (node, outcome): entered, yes, no, timeout, ...
    effects: list[Effect] = field(default_factory=list)


def key(journey_id: int, version: int, contact_id: int, entry: int, node: str) -> str:
    """The business key of a node's effect: the delivery key, the ledger reference."""
    return f"journey:{journey_id}:{version}:{contact_id}:{entry}:{node}"


def split_bucket(journey_id: int, contact_id: int, entry: int) -> int:
    """0..99, the same for the same (journey, contact, entry) in every process and every replay."""
    digest = hashlib.sha256(f"{journey_id}:{contact_id}:{entry}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def pick_branch(split: Split, bucket: int) -> int | None:
    """The index of the branch `bucket` falls in, or None for the holdout."""
    edge = 0
    for i, branch in enumerate(split.branches):
        edge += branch.percent
        if bucket < edge:
            return i
    return None


def next_time_of_day(now: datetime, hhmm: str, tz: ZoneInfo) -> datetime:
    """The first instant after `now` when the wall clock in `tz` reads `hhmm`."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    local = now.astimezone(tz)
    day: date = local.date()
    for _ in range(3):
        candidate = datetime.combine(day, time(hour, minute), tzinfo=tz)
        if candidate > local:
            return candidate.astimezone(now.tzinfo)
        day += timedelta(days=1)
    raise AssertionError("unreachable: a time of day recurs within two days")


def variables(contact: ContactView, event: Mapping[str, Any]) -> dict[str, Any]:
    return {"contact": {"id": contact.id, "traits": dict(contact.traits)}, "event": dict(event)}


def matches(expression: str | None, contact: ContactView, event: Mapping[str, Any]) -> bool:
    """Whether the CEL `expression` (None: no condition) holds for the contact and event; evaluated on just the
    variables and traits it reads."""
    return expression is None or evaluate(expression, pruned(expression, variables(contact, event), "contact",
                                                             "traits"))


def advance(graph: Graph, journey_id: int, entry: int, contact: ContactView, event: Mapping[str, Any],
            node_id: str, status: Status, now: datetime, *, default_zone: str = "UTC") -> Advance:
    """Move a due contact on from (`node_id`, `status`) until it waits or leaves. A validated graph has no cycle
    without a wait, so this visits each node at most once."""
    visits: list[tuple[str, str]] = []
    effects: list[Effect] = []

    def goto(target: str) -> str:
        visits.append((target, "entered"))
        return target

    node = graph.nodes.get(node_id)
    if node is None:
        return Advance(node_id, Status.FAILED, visits=[(node_id, "failed")])
    if status is Status.SLEEPING and isinstance(node, Wait):
        visits.append((node_id, "woke"))
        node_id = goto(node.next)
    elif status is Status.WAITING and isinstance(node, WaitForEvent):
        visits.append((node_id, "timeout"))
        node_id = goto(node.timeout_next)
    for _ in range(len(graph.nodes) + 1):
        node = graph.nodes[node_id]
        if isinstance(node, Trigger):
            node_id = goto(node.next)
        elif isinstance(node, Wait):
            if node.seconds is not None:
                wake = now + timedelta(seconds=node.seconds)
            else:
                wake = next_time_of_day(now, node.until or "00:00", zone(contact.timezone, default_zone))
            return Advance(node_id, Status.SLEEPING, wake, None, visits, effects)
        elif isinstance(node, WaitForEvent):
            return Advance(node_id, Status.WAITING, now + timedelta(seconds=node.timeout_seconds), node.event,
                           visits, effects)
        elif isinstance(node, Condition):
            yes = matches(node.when, contact, event)
            visits.append((node_id, "yes" if yes else "no"))
            node_id = goto(node.yes if yes else node.no)
        elif isinstance(node, Split):
            branch = pick_branch(node, split_bucket(journey_id, contact.id, entry))
            if branch is None:
                visits.append((node_id, "holdout"))
                return Advance(node_id, Status.HOLDOUT, None, None, visits, effects)
            visits.append((node_id, f"branch:{branch}"))
            node_id = goto(node.branches[branch].next)
        elif isinstance(node, Send):
            effects.append(Effect("send", node_id, {"chain": list(node.chain), "content": node.content,
                                                    "topic": node.topic}))
            node_id = goto(node.next)
        elif isinstance(node, UpdateContact):
            effects.append(Effect("update", node_id, {"traits": node.traits}))
            node_id = goto(node.next)
        elif isinstance(node, Grant):
            effects.append(Effect("grant", node_id, {"program_id": node.program_id, "amount": node.amount,
                                                     "coupon_template_id": node.coupon_template_id}))
            node_id = goto(node.next)
        elif isinstance(node, Exit):
            visits.append((node_id, "exited"))
            return Advance(node_id, Status.EXITED, None, None, visits, effects)
    visits.append((node_id, "failed"))
    return Advance(node_id, Status.FAILED, None, None, visits, effects)


def on_event(graph: Graph, node_id: str, contact: ContactView, event: Mapping[str, Any]) -> str | None:
    """The node a contact waiting in `node_id` moves to when `event` arrives, or None if it does not match."""
    node = graph.nodes.get(node_id)
    if not isinstance(node, WaitForEvent) or event.get("event") != node.event:
        return None
    return node.next if matches(node.when, contact, event) else None


def triggered(graph: Graph, contact: ContactView, event: Mapping[str, Any]) -> bool:
    """Whether `event` enters the contact (event and segment triggers; date traits enter by date, not event)."""
    t = graph.trigger
    if t.event is None or event.get("event") != t.event:
        return False
    if t.segment_id is not None and (event.get("properties") or {}).get("segment_id") != t.segment_id:
        return False
    return matches(t.when, contact, event)


def converts(graph: Graph, contact: ContactView, event: Mapping[str, Any]) -> bool:
    goal = graph.goal
    return goal is not None and event.get("event") == goal.event and matches(goal.when, contact, event)


def may_enter(graph: Graph, last_entered: datetime | None, now: datetime) -> bool:
    """The re-entry policy: once; once per N days; every time."""
    if last_entered is None:
        return True
    if graph.reentry.value == "once":
        return False
    if graph.reentry.value == "per_days":
        return now - last_entered >= timedelta(days=graph.reentry_days or 1)
    return True
