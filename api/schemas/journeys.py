"""Journey request and response bodies: the versioned graph a marketer edits, its versions, per-node counts and a
contact's journey history. The graph itself is validated by `domain.journeys.graph.parse` (422 naming the node)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

CART_GRAPH: dict[str, Any] = {
    "reentry": {"policy": "per_days", "days": 7},
    "goal": {"event": "order_paid"},
    "nodes": [
        {"id": "start", "type": "trigger", "event": "cart_updated", "when": "event.properties.total > 0",
         "next": "paid1"},
        {"id": "paid1", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 3600,
         "next": "done", "timeout_next": "email"},
        {"id": "email", "type": "send", "chain": ["email", "sms"], "topic": "cart",
         "content": {"email": {"subject": "{{ contact.first_name | default('Hi') }}, you left something behind",
                               "text": "Your cart ({{ event.properties.total }}) is waiting."},
                     "sms": {"text": "Your cart is waiting."}}, "next": "paid2"},
        {"id": "paid2", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 86400,
         "next": "done", "timeout_next": "offer"},
        {"id": "offer", "type": "grant", "program_id": 1, "amount": 100, "next": "sms"},
        {"id": "sms", "type": "send", "chain": ["sms"], "content": {"sms": {"text": "100 points on your cart"}},
         "next": "done"},
        {"id": "done", "type": "exit"},
    ],
}

GRAPH_DOC = (
    "The journey graph: `nodes` (one `trigger`: `event` + optional CEL `when`, or `segment_id` + `on` entered/"
    "exited, or `date_trait`; `wait`: `seconds` or `until` 'HH:MM' in the contact's zone; `wait_for_event`: `event`, "
    "`when`, `timeout_seconds`, `next`, `timeout_next`; `condition`: CEL `when` over `contact` and `event`, `yes`, "
    "`no`; `split`: `branches` [{percent, next}] with the rest held out; `send`: `chain`, `content` per channel (its "
    "subject/text/html/title/body and `fields` are sandboxed Jinja2 templates over `contact` and `event`), "
    "`topic`; `update_contact`: `traits`; `grant`: `program_id` and `amount` (points) or `coupon_template_id` (one "
    "coupon); `exit`), `reentry` (`once`, "
    "`per_days` with `days`, `every_time`) and `goal` (`event`, `when`).")


class JourneyIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Abandoned cart", "graph": CART_GRAPH}]})

    name: str = Field(min_length=1, max_length=200)
    graph: dict[str, Any] = Field(description=GRAPH_DOC)


class VersionOut(BaseModel):
    version: int = Field(ge=1, le=2**31 - 1)
    published_at: datetime
    graph: dict[str, Any]


class JourneyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 1, "name": "Abandoned cart", "status": "live", "version": 1, "draft": CART_GRAPH,
        "created_at": "2026-12-03T10:00:00Z", "updated_at": "2026-12-03T10:00:00Z",
        "versions": [{"version": 1, "published_at": "2026-12-03T10:00:00Z", "graph": CART_GRAPH}],
        "counts": {"start": {"entered": 120}, "paid1": {"entered": 120, "event": 30, "timeout": 80},
                   "done": {"entered": 30, "exited": 30}},
        "waiting": {"paid1": 10}, "workflow_id": "journey:1"}]})

    id: int
    name: str
    status: str = Field(description="draft, live, paused or archived")
    version: int = Field(description="The latest published version (0: never published).")
    draft: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    versions: list[VersionOut] = []
    counts: dict[str, dict[str, int]] = Field(default={}, description="node → outcome → contacts, all versions")
    waiting: dict[str, int] = Field(default={}, description="node → contacts waiting there now")
    workflow_id: str


class JourneyStepOut(BaseModel):
    version: int
    node: str
    outcome: str
    at: datetime
    reason: str | None = Field(default=None, description="Why an `exited` was forced: archived, merged")


class ContactJourneyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "journey_id": 1, "name": "Abandoned cart", "entry": 1, "version": 1, "node": "paid2", "status": "waiting",
        "entered_at": "2026-12-03T10:00:00Z", "wake_at": "2026-12-04T11:00:00Z",
        "steps": [{"version": 1, "node": "start", "outcome": "entered", "at": "2026-12-03T10:00:00Z"}]}]})

    journey_id: int
    name: str
    entry: int
    version: int
    node: str
    status: str
    entered_at: datetime
    wake_at: datetime | None
    exit_reason: str | None = Field(default=None, description="A forced end: archived (the journey was archived), "
                                                              "merged (the contact was merged into another)")
    steps: list[JourneyStepOut]
