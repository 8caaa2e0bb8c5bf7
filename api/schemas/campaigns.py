"""Campaign request and response bodies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from api.params import Id
from domain.campaigns_timing import MAX_INTERVAL, MIN_INTERVAL, known_zone, parse_cron, parse_local_time
from domain.errors import DomainError

EXAMPLE = {
    "name": "Spring sale",
    "channel": "email",
    "subject": "{{ contact.first_name | default('Hi') }}, spring prices are in",
    "body": "Hello {{ contact.first_name | default('there') }},\n20% off everything until Sunday.",
    "audience": {"segment_ids": [4], "exclude_segment_ids": [9], "contact_ids": [1, 2, 3]},
    "variants": [{"name": "a", "weight": 1},
                 {"name": "b", "weight": 1, "subject": "Last days: 20% off, {{ contact.first_name | default('') }}"}],
    "holdout_percent": 10,
    "conversion_event": "order_paid",
    "max_per_second": 200,
}
CHAIN_EXAMPLE = {
    "name": "Parcel shipped", "chain": ["wechat", "sms"], "subject": "unused by this chain", "body": "-",
    "content": {"wechat": {"template_id": "tpl-shipped", "fields": {"first": "{{ contact.first_name | default('') }}, "
                                                                   "your parcel is on its way"}},
                "sms": {"text": "{{ contact.first_name | default('Hi') }}, your parcel is on its way."}},
    "audience": {"segment_ids": [4]},
}


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment_ids: list[Id] = Field(default_factory=list, max_length=20,
                                  description="Segments whose members at launch are snapshotted into the run.")
    exclude_segment_ids: list[Id] = Field(default_factory=list, max_length=20,
                                          description="Members of these segments at launch are left out.")
    contact_ids: list[Id] = Field(default_factory=list, max_length=100_000, validate_default=True,
                                  description="Explicit recipients (a manual list).")

    @field_validator("contact_ids")
    @classmethod
    def _some_audience(cls, value: list[int], info: ValidationInfo) -> list[int]:
        if not value and not info.data.get("segment_ids"):
            raise ValueError("give at least one contact id or one segment id")
        return value


class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")
    weight: int = Field(1, ge=1, le=1000, description="Relative share of the treated recipients.")
    subject: str | None = Field(None, min_length=1, max_length=998, description="Overrides the campaign's subject.")
    body: str | None = Field(None, min_length=1, description="Overrides the campaign's body.")
    html: str | None = Field(None, description="Overrides the campaign's HTML part.")


ChannelName = Literal["email", "sms", "push", "wechat", "inbox", "webhook"]
TEMPLATE = "Jinja2 template (sandboxed); `contact` and `campaign` are in scope."


class SmsContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=1600, description=TEMPLATE)


class PushContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, description=TEMPLATE)
    body: str = Field(min_length=1, max_length=2000, description=TEMPLATE)
    data: dict[str, str] | None = Field(None, max_length=20, description="Static key/values for the app.")


class WechatContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: str = Field(min_length=1, max_length=100, description="The approved WeChat template's id.")
    url: str | None = Field(None, max_length=2000)
    fields: dict[str, str] = Field(min_length=1, max_length=20, description="Template field → Jinja2 template.")


class InboxContent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, description=TEMPLATE)
    body: str = Field(min_length=1, max_length=4000, description=TEMPLATE)
    display: Literal["toast", "popup", "banner"] = "banner"


class ChannelContent(BaseModel):
    """Templates for the channels of the chain other than email (email uses subject, body and html)."""

    model_config = ConfigDict(extra="forbid")
    sms: SmsContent | None = None
    push: PushContent | None = None
    wechat: WechatContent | None = None
    inbox: InboxContent | None = None
    webhook: SmsContent | None = None


def _zone(value: str) -> str:
    try:
        known_zone(value)
    except DomainError as exc:
        raise ValueError(str(exc)) from None
    return value


def _aware_time(value: datetime | None) -> datetime | None:
    if value is not None and value.utcoffset() is None:
        raise ValueError("give the time with its zone offset, e.g. 2026-12-24T09:00:00+08:00")
    return value


class RecurrenceIn(BaseModel):
    """A Temporal Schedule starts one run of the campaign per occurrence."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"cron": "0 9 * * MON", "timezone": "Asia/Shanghai", "until": "2027-06-30T00:00:00+08:00"},
        {"every": "P1D"}]})

    cron: str | None = Field(None, max_length=200, description="Five fields, minute hour day-of-month month "
                                                              "day-of-week (`0 9 * * MON`), or `@daily` and the like; "
                                                              "restrict either the day of month or the day of week.")
    every: timedelta | None = Field(None, description="Or an interval (ISO 8601, `PT6H`, `P1D`; one hour to 366 "
                                                      "days), counted from the Unix epoch as Temporal counts it.")
    timezone: str = Field("UTC", max_length=64, description="The IANA zone the cron's times are read in.")
    start: datetime | None = Field(None, description="No occurrence before this (with a zone offset).")
    until: datetime | None = Field(None, description="No occurrence after this (with a zone offset); after the "
                                                     "last one's run the campaign completes.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return parse_cron(value).text
        except DomainError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("every")
    @classmethod
    def _every(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and not MIN_INTERVAL <= value <= MAX_INTERVAL:
            raise ValueError("between one hour and 366 days")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _zone(value)

    @field_validator("start", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_time(value)

    @model_validator(mode="after")
    def _one_rule(self) -> RecurrenceIn:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give either `cron` or `every`")
        if self.start and self.until and self.until <= self.start:
            raise ValueError("`until` must be after `start`")
        return self


class LocalTiming(BaseModel):
    """Local-time sends: shared by create and launch."""

    local_time: str | None = Field(None, examples=["09:00"],
                                   description="HH:MM: each recipient gets the message at this time on their own "
                                               "clock (their zone, else `timezone`); a zone where it has passed "
                                               "already gets it at that time the next day.")

    @field_validator("local_time")
    @classmethod
    def _local_time(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            t = parse_local_time(value)
        except DomainError as exc:
            raise ValueError(str(exc)) from None
        return t.strftime("%H:%M")


class CampaignIn(LocalTiming):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE, CHAIN_EXAMPLE]})

    name: str = Field(min_length=1, max_length=200)
    channel: Literal["email"] = "email"
    chain: list[ChannelName] = Field(["email"], min_length=1, max_length=4,
                                     description="The fallback chain: the next channel is tried only when the one "
                                                 "before failed, was suppressed or stayed silent past its window.")
    content: ChannelContent = Field(default_factory=ChannelContent)
    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, description="Jinja2 template (sandboxed); `contact` and `campaign` are in scope.")
    html: str | None = Field(None, description="Optional HTML part, autoescaped.")
    audience: Audience
    variants: list[VariantIn] = Field(default_factory=list, max_length=10,
                                      description="A/B/n variants; none means everyone gets the content above.")
    holdout_percent: float = Field(0, ge=0, le=50, description="Share of the audience recorded but not sent to.")
    conversion_event: str | None = Field(None, min_length=1, max_length=200,
                                         description="Event counted as a conversion when it follows the send.")
    incentive: dict[str, Any] | None = Field(None, description="What the campaign gives (e.g. `{\"points\": 100}`); "
                                                               "the default approval policy then requires approval.")
    approval_required: bool = Field(False, description="Ask for approval even when the policy does not.")
    max_per_second: int | None = Field(None, ge=1, le=100_000, examples=[200],
                                       description="Send-rate cap for this campaign's runs, in messages a second: "
                                                   "batches hold at most this many recipients and start no faster "
                                                   "than the cap allows. None: as fast as the workers go.")
    recurrence: RecurrenceIn | None = Field(None, description="Send it again and again: the launch creates a "
                                                              "Temporal Schedule, one numbered run per occurrence.")
    timezone: str = Field("UTC", max_length=64, description="The zone of recipients without one (local-time sends).")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _zone(value)

    @field_validator("chain")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a channel appears twice in the chain")
        return value

    @model_validator(mode="after")
    def _content_for_chain(self) -> CampaignIn:
        missing = [c for c in self.chain if c != "email" and getattr(self.content, c) is None]
        if missing:
            raise ValueError(f"content.{missing[0]}: the chain names {missing[0]} but gives no content for it")
        return self


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"note": "Copy checked, go."}]})

    note: str | None = Field(None, max_length=1000)


class VariantOut(BaseModel):
    variant: str
    total: int
    queued: int
    sent: int
    failed: int
    suppressed: int
    holdout: int
    cancelled: int
    deferred: int = 0
    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    converted: int = 0
    conversion_rate: float | None = None


class LaunchIn(LocalTiming):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"at": "2026-12-24T09:00:00+08:00"}, {"local_time": "09:00", "timezone": "Europe/Paris"},
        {"recurrence": {"cron": "0 9 * * MON", "timezone": "Asia/Shanghai"}}]})

    at: datetime | None = Field(None, description="Start at this time (with a zone offset; within a year) instead of "
                                                  "now: the campaign is `scheduled` until then. With a recurrence: "
                                                  "its first occurrence is at or after this.")
    recurrence: RecurrenceIn | None = Field(None, description="Replaces the campaign's recurrence for this launch.")
    timezone: str | None = Field(None, max_length=64, description="Replaces the campaign's default zone.")

    @field_validator("at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return _aware_time(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return _zone(value) if value is not None else None


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"contact_id": 42, "channel": "sms"}]})

    contact_id: Id
    channel: ChannelName = "email"
    variant: str | None = Field(None, max_length=40, description="Render this variant's email instead of the "
                                                                 "campaign's.")


class PreviewOut(BaseModel):
    channel: str
    content: dict[str, Any] = Field(description="What the delivery service would send on this channel.")


class RecurrenceOut(BaseModel):
    cron: str | None
    every_seconds: int | None
    timezone: str
    start: datetime | None
    until: datetime | None
    schedule_id: str = Field(description="The Temporal Schedule that starts its runs (created at launch, deleted on "
                                         "cancel).")


class RunSummary(BaseModel):
    number: int
    status: str
    workflow_id: str
    scheduled_at: datetime | None = Field(None, description="The occurrence's time (runs a schedule started).")
    started_at: datetime
    finished_at: datetime | None
    error: str | None = Field(None, description="Why the run sent nothing (status `failed`): an occurrence whose "
                                                "recipients lack a template variable.")
    total: int
    sent: int
    failed: int
    queued: int
    suppressed: int = 0
    holdout: int = 0
    cancelled: int = 0
    deferred: int = 0


class RunOut(BaseModel):
    number: int
    status: str
    workflow_id: str
    total: int
    queued: int
    sent: int
    failed: int
    suppressed: int = 0
    holdout: int = 0
    cancelled: int = 0
    deferred: int = 0
    scheduled_at: datetime | None = None
    started_at: datetime
    finished_at: datetime | None
    error: str | None = Field(None, description="Why the run sent nothing (status `failed`).")
    temporal_ui: str | None = Field(None, description="Where to watch this run in the Temporal UI.")
    variants: list[VariantOut] | None = Field(None, description="Per variant (on GET of one campaign).")
    holdout_lift: float | None = Field(None, description="Relative lift of the treated conversion rate over the "
                                                          "holdout's (needs a conversion event and a holdout).")
    channels: dict[str, dict[str, int]] | None = Field(
        None, description="Per channel, messages by state (on GET of one campaign; receipts move them on).")


class CampaignOut(BaseModel):
    id: int
    name: str
    channel: str
    status: str
    subject: str
    body: str
    html: str | None
    audience: Audience
    chain: list[str] = ["email"]
    content: ChannelContent = ChannelContent()
    variants: list[VariantIn] = []
    holdout_percent: float = 0
    conversion_event: str | None = None
    incentive: dict[str, Any] | None = None
    approval_required: bool = False
    created_by: str | None = None
    max_per_second: int | None = Field(None, description="The send-rate cap, messages a second (None: no cap).")
    recurrence: RecurrenceOut | None = None
    local_time: str | None = None
    timezone: str = "UTC"
    created_at: datetime
    run: RunOut | None = None
    runs: list[RunSummary] | None = Field(None, description="Every run, latest first, with its counts (on GET of one "
                                                            "campaign; the latest 50).")


class TransitionOut(BaseModel):
    id: int
    from_status: str
    to_status: str
    key_id: int | None
    key_name: str | None
    note: str | None
    at: datetime
