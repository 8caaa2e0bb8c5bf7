"""Contact request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator


def _zone(value: str | None) -> str | None:
    if value is None:
        return value
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from exc
    return value


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"user_id": "u-1001", "email": "ada@example.com", "phone": "+447700900123",
         "timezone": "Europe/London", "traits": {"first_name": "Ada", "plan": "pro"}},
    ]})

    user_id: str | None = Field(None, min_length=1, max_length=200, description="Your stable id for this person.")
    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$", description="E.164, e.g. +447700900123")
    timezone: str | None = Field(None, max_length=64, description="IANA zone, e.g. Asia/Shanghai")
    traits: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str | None) -> str | None:
        return _zone(value)


class ContactPatch(BaseModel):
    """Only the fields sent change; `traits` merge key by key, `unset_traits` are removed."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email": "ada@lovelace.dev", "traits": {"plan": "enterprise"}, "unset_traits": ["trial_ends"]},
    ]})

    email: EmailStr | None = None
    phone: str | None = Field(None, pattern=r"^\+[1-9]\d{6,14}$", description="E.164, e.g. +447700900123")
    timezone: str | None = Field(None, max_length=64, description="IANA zone, e.g. Asia/Shanghai")
    traits: dict[str, Any] = Field(default_factory=dict)
    unset_traits: list[str] = Field(default_factory=list, max_length=100)

    @field_validator("timezone")
    @classmethod
    def known_zone(cls, value: str | None) -> str | None:
        return _zone(value)


class ContactOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: str | None
    email: str | None
    phone: str | None
    timezone: str | None
    traits: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = Field(None, description="Timestamp of the latest event, skew-corrected.")


class IdentityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str = Field(description="user_id, anonymous_id, email, phone, wechat_openid or device_id")
    value: str
    created_at: datetime


class ContactDetail(ContactOut):
    identities: list[IdentityOut] = Field(default_factory=list)


class EventOut(BaseModel):
    id: int
    message_id: str
    type: str
    event: str | None
    properties: dict[str, Any]
    context: dict[str, Any]
    timestamp: datetime
    received_at: datetime


class EventPage(BaseModel):
    items: list[EventOut]
    next_before: str | None = Field(None, description="Pass as `before` for older events; null at the end.")


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_after: int | None = Field(None, description="Pass as `after` to get the next page; null at the end.")
