"""The `Channel` protocol every provider adapter implements, and what a send returns.

A message carries its delivery key; adapters use it as the provider's idempotency key (for email, the
Message-ID), so a retried send is recognisably the same message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ErrorClass(StrEnum):
    RETRYABLE = "retryable"            # try again later (timeouts, 4xx greylisting, provider 5xx)
    NON_RETRYABLE = "non_retryable"    # this message will never go through this channel
    UNREACHABLE = "unreachable"        # the contact has no address on this channel


@dataclass(frozen=True)
class Message:
    key: str
    to: str | None
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


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
