"""Segment-spec request bodies, for the OpenAPI docs. The ingest routes parse bodies with orjson and
domain/events.py (Pydantic per event would cost more than the database does at 20k events/s)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_COMMON = {"messageId": "msg-7f1c", "timestamp": "2024-05-01T10:00:00.000Z", "context": {"ip": "203.0.113.9"}}


class Call(BaseModel):
    model_config = ConfigDict(extra="allow")

    userId: str | None = Field(None, description="Your id for a known person. userId or anonymousId is required.")
    anonymousId: str | None = Field(None, description="A device or cookie id for someone not yet known.")
    messageId: str | None = Field(None, max_length=100, description="Unique per call; retries with the same "
                                  "messageId are stored once.")
    timestamp: str | None = Field(None, description="ISO-8601; corrected for clock skew with sentAt.")
    sentAt: str | None = Field(None, description="ISO-8601 device time when the call was sent.")
    context: dict[str, Any] | None = None


class TrackCall(Call):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_COMMON, "userId": "u-1001", "event": "order_paid", "properties": {"amount": 129.5, "currency": "CNY"}},
    ]})
    event: str
    properties: dict[str, Any] | None = None


class PageCall(Call):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_COMMON, "anonymousId": "a-93d1", "name": "Pricing", "properties": {"path": "/pricing"}},
    ]})
    name: str | None = None
    category: str | None = None
    properties: dict[str, Any] | None = None


class IdentifyCall(Call):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_COMMON, "userId": "u-1001", "anonymousId": "a-93d1",
         "traits": {"email": "ada@example.com", "plan": "pro"}},
    ]})
    traits: dict[str, Any] | None = None


class GroupCall(Call):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_COMMON, "userId": "u-1001", "groupId": "acme", "traits": {"name": "Acme Inc"}},
    ]})
    groupId: str
    traits: dict[str, Any] | None = None


class AliasCall(Call):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {**_COMMON, "userId": "u-1001", "previousId": "a-93d1"},
    ]})
    previousId: str


class BatchCall(BaseModel):
    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "sentAt": "2024-05-01T10:00:01.000Z",
        "batch": [{"type": "track", "userId": "u-1001", "event": "app_open", "messageId": "m-1"},
                  {"type": "identify", "userId": "u-1001", "traits": {"plan": "pro"}, "messageId": "m-2"}],
    }]})
    batch: list[dict[str, Any]] = Field(description="Up to 2500 calls, each with a `type`; at most 500 KB in all "
                                        "and 32 KB per call.")
    sentAt: str | None = None
    context: dict[str, Any] | None = Field(None, description="Merged into every call's context.")


class Accepted(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"success": True, "received": 2, "inserted": 2}]})
    success: Literal[True] = True
    received: int = Field(description="Calls in the request.")
    inserted: int = Field(description="Calls stored; the rest were duplicates of earlier messageIds.")


CALLS: dict[str, type[BaseModel]] = {
    "track": TrackCall, "page": PageCall, "screen": PageCall, "identify": IdentifyCall, "group": GroupCall,
    "alias": AliasCall, "batch": BatchCall,
}
