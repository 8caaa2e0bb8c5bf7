"""The `Channel` protocol every provider adapter implements, what a send returns, and what a provider's delivery
callback becomes (`Receipt`).

A message carries its delivery key; adapters use it as the provider's idempotency key (for email, the
Message-ID), so a retried send is recognisably the same message. Adapters never raise for one message's
failure: each message gets a `SendResult` with an `ErrorClass`. They raise only when the whole batch cannot be
tried (the provider is unreachable), which the calling activity retries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"            # try again later (timeouts, 4xx greylisting, provider 5xx, throttling)
    NON_RETRYABLE = "non_retryable"    # permanent: this message will never go through this channel
    UNREACHABLE = "unreachable"        # the contact has no (valid) address on this channel: no openid, dead token


@dataclass(frozen=True)
class Message:
    """One rendered message for one channel. `to` is the address on that channel: an email address, an E.164
    phone number, an FCM registration token, a WeChat openid, a webhook URL, or the contact id for the in-app
    inbox. `data` holds what is structured rather than text: WeChat's `template_id` and template fields, a
    push's data payload, a webhook's JSON body, an inbox message's display hint."""

    key: str
    to: str | None
    subject: str = ""
    text: str = ""
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendResult:
    key: str
    accepted: bool
    provider_message_id: str | None = None
    error: str | None = None
    error_class: ErrorClass | None = None


class Channel(Protocol):
    name: str

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send each message once; never raise for one message's failure."""
        ...


class ReceiptStatus(StrEnum):
    """What a provider says happened to a message after it accepted it."""

    SENT = "sent"
    DELIVERED = "delivered"
    OPENED = "opened"
    CLICKED = "clicked"
    DEFERRED = "deferred"
    FAILED = "failed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


@dataclass(frozen=True)
class Receipt:
    """One delivery report from a provider's callback, in Nudge's terms. `provider_message_id` is what the
    adapter's `SendResult` returned for the message; `key` is the delivery key when the provider echoes it.
    `event_id` identifies the callback itself (for replay refusal) when the provider gives one."""

    channel: str
    status: ReceiptStatus
    at: datetime
    provider_message_id: str | None = None
    key: str | None = None
    error: str | None = None
    event_id: str | None = None


class WebhookRefused(Exception):
    """A callback that must change nothing: a bad or missing signature, a stale timestamp, a body that does not
    parse. The message says which, for the provider's logs (never the expected signature)."""


class CallbackVerifier(Protocol):
    """Verifies and parses one provider's delivery callbacks (`POST /v1/webhooks/{provider}`)."""

    provider: str

    def parse_callback(self, url: str, headers: Mapping[str, str], body: bytes, now: datetime) -> list[Receipt]:
        """The receipts a verified callback carries; `WebhookRefused` when it must change nothing."""
        ...
