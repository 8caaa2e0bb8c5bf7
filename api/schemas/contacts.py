"""Contact request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator


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
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Paris") from exc
        return value


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


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_after: int | None = Field(None, description="Pass as `after` to get the next page; null at the end.")
