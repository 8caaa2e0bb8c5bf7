"""Campaign request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.params import Id


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_ids: list[Id] = Field(min_length=1, max_length=100_000, description="Explicit recipients.")


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "name": "Spring sale",
        "channel": "email",
        "subject": "{{ contact.first_name | default('Hi') }}, spring prices are in",
        "body": "Hello {{ contact.first_name | default('there') }},\n20% off everything until Sunday.",
        "audience": {"contact_ids": [1, 2, 3]},
    }]})

    name: str = Field(min_length=1, max_length=200)
    channel: Literal["email"] = "email"
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, description="Jinja2 template (sandboxed); `contact` and `campaign` are in scope.")
    html: str | None = Field(None, description="Optional HTML part, autoescaped.")
    audience: Audience


class RunOut(BaseModel):
    number: int
    status: str
    workflow_id: str
    total: int
    queued: int
    sent: int
    failed: int
    started_at: datetime
    finished_at: datetime | None
    temporal_ui: str | None = Field(None, description="Where to watch this run in the Temporal UI.")


class CampaignOut(BaseModel):
    id: int
    name: str
    channel: str
    status: str
    subject: str
    body: str
    html: str | None
    audience: Audience
    created_at: datetime
    run: RunOut | None = None
