"""Segment request and response bodies. Rules are validated by domain/segments.py (422 naming the problem)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.params import Id

RULE_EXAMPLE = {"and": [
    {"field": "traits.plan", "op": "eq", "value": "pro"},
    {"event": "order_paid", "within_last": "30d", "count": {"op": "gte", "value": 2},
     "where": {"field": "properties.amount", "op": "gt", "value": 100}},
    {"not": {"event": "app_open", "last": {"op": "within_last", "value": "14d"}}},
]}
RULE_DOC = (
    "A condition tree: `{\"and\": [...]}`, `{\"or\": [...]}`, `{\"not\": {...}}`; field conditions "
    "`{\"field\": \"traits.plan\", \"op\": \"eq\", \"value\": \"pro\"}` over contact fields, `traits.*`, "
    "`identities.<kind>` and `scores.*`; event conditions `{\"event\": \"order_paid\", \"within_last\": \"30d\", "
    "\"count\": {\"op\": \"gte\", \"value\": 2}, \"where\": {...} | \"where_cel\": \"event.properties.amount > 100\", "
    "\"last\": {\"op\": \"before\", \"value\": \"14d\"}}`; segment membership `{\"segment\": 12}`."
)


class SegmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Engaged buyers", "kind": "rule", "rule": RULE_EXAMPLE},
        {"name": "Beta testers", "kind": "manual", "contact_ids": [1, 2, 3]},
    ]})

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    kind: Literal["manual", "rule"] = "rule"
    rule: dict[str, Any] | None = Field(None, description=RULE_DOC)
    contact_ids: list[Id] = Field(default_factory=list, max_length=100_000,
                                  description="Initial members of a manual segment.")


class SegmentPatch(BaseModel):
    """Only the fields sent change; `description: null` clears it. A rule is checked like at creation."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "Engaged buyers (EU)"},
        {"rule": {"and": [{"field": "traits.plan", "op": "in", "value": ["pro", "team"]},
                          {"event": "order_paid", "within_last": "30d",
                           "where_cel": "event.properties.amount > 100 && event.properties.currency == \"EUR\""}]}},
    ]})

    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    rule: dict[str, Any] | None = Field(None, description=RULE_DOC + " Changing it re-computes membership at once "
                                        "(members that no longer match exit, new matches enter).")


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rule": RULE_EXAMPLE, "sample": 10}]})

    rule: dict[str, Any] = Field(description=RULE_DOC)
    sample: int = Field(10, ge=0, le=100, description="How many matching contacts to return.")


class SampleContact(BaseModel):
    id: int
    user_id: str | None
    email: str | None
    traits: dict[str, Any]


class PreviewOut(BaseModel):
    count: int
    sample: list[SampleContact]
    backend: str = Field(description="The SegmentIndex that answered: postgres or elasticsearch.")


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    kind: str
    rule: dict[str, Any] | None
    time_based: bool
    refreshed_at: datetime | None
    created_at: datetime
    member_count: int = 0


class SegmentPage(BaseModel):
    items: list[SegmentOut]
    next_after: int | None = None


class CountOut(BaseModel):
    segment_id: int
    count: int


class MemberOut(BaseModel):
    contact_id: int
    entered_at: datetime


class MemberPage(BaseModel):
    items: list[MemberOut]
    next_after: int | None = Field(None, description="Pass as `after` to get the next page; null at the end.")


class MembersIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"contact_ids": [1, 2, 3]}]})

    contact_ids: list[Id] = Field(min_length=1, max_length=100_000)


class MembersChanged(BaseModel):
    segment_id: int
    changed: int = Field(description="Members that entered (add) or exited (remove); repeats change nothing.")
    unknown: list[str] = Field(default_factory=list, description="CSV values that matched no contact (first 100).")


class RefreshOut(BaseModel):
    segment_id: int
    entered: int
    exited: int


class SegmentDeleted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"id": 12, "exited": 1840}]})

    id: int
    exited: int = Field(description="Members that exited (each with a `segment_exited` event) as it was deleted.")
