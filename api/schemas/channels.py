"""Channels request and response bodies: the in-app inbox, preferences, suppressions and a contact's deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.params import StrictId

CHANNEL = r"^[a-z][a-z0-9_]{0,31}$"
TOPIC = r"^(\*|[A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$"
ChannelName = Literal["email", "sms", "push", "wechat", "webhook", "inbox"]


class InboxMessageOut(BaseModel):
    id: int
    title: str
    body: str
    display: Literal["toast", "popup", "banner"] = Field(description="How the app shows it (seed 000's forms).")
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    expires_at: datetime | None


class InboxOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "unread": 1, "next_before": None,
        "messages": [{"id": 7, "title": "Double points today", "body": "Check in before midnight.",
                      "display": "toast", "data": {"deeplink": "app://checkin"},
                      "created_at": "2026-12-03T08:00:00Z", "read_at": None, "expires_at": None}]}]})

    unread: int = Field(description="Unread, live messages (the badge count).")
    messages: list[InboxMessageOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page; null at the end.")


class MarkReadIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ids": [7, 8]}, {"ids": None}]})

    ids: list[StrictId] | None = Field(None, max_length=500, description="Messages to mark read; null: all of them.")


class MarkedOut(BaseModel):
    marked: int
    unread: int


class PreferenceRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic: str = Field("*", pattern=TOPIC, description="A topic (`newsletter`, `orders`) or `*` for every topic.")
    channel: str = Field("*", pattern=r"^(\*|[a-z][a-z0-9_]{0,31})$", description="A channel or `*` for all.")
    subscribed: bool


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rules": [
        {"topic": "*", "channel": "sms", "subscribed": False},
        {"topic": "orders", "channel": "*", "subscribed": True}]}]})

    rules: list[PreferenceRule] = Field(max_length=200, description="The contact's whole set of rules; the most "
                                                                   "specific wins, no rule means subscribed.")


class PreferencesOut(BaseModel):
    contact_id: int
    rules: list[PreferenceRule]


class SuppressionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"channel": "email", "address": "bounced@example.com", "reason": "manual", "note": "asked by phone"}]})

    channel: ChannelName
    address: str = Field(min_length=1, max_length=320, description="The address on that channel (stored hashed).")
    reason: Literal["bounce", "complaint", "unsubscribe", "manual"] = "manual"
    note: str | None = Field(None, max_length=500)
    contact_id: StrictId | None = None


class SuppressionOut(BaseModel):
    channel: str
    address_hash: str
    contact_id: int | None
    reason: str
    note: str | None
    since: datetime


class SuppressionsOut(BaseModel):
    suppressions: list[SuppressionOut]
    next_after: str | None = Field(description="Pass as `after` for the next page; null at the end.")


class AttemptOut(BaseModel):
    key: str
    attempt: int = Field(description="1 for the chain's first channel, 2 for its first fallback...")
    channel: str
    status: str
    provider_message_id: str | None
    error_class: str | None
    error: str | None
    queued_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    failed_at: datetime | None
    receipt_due_at: datetime | None
    step_status: str = Field(description="The step's: pending, sending, waiting (a receipt), deferred, done.")
    outcome: str | None = Field(description="A finished step's: delivered, sent (no receipt expected), exhausted.")


class DeliveriesOut(BaseModel):
    attempts: list[AttemptOut]


class WebhookOut(BaseModel):
    reports: int
    matched: int
    unknown: int
