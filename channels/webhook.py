"""The webhook channel: a JSON POST to the contact's (or the step's) URL, signed like Stripe's webhooks.

Headers: `Nudge-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>` and `Nudge-Delivery: <key>`
(the receiver's idempotency key). 2xx accepted; 410 Gone means the endpoint is gone for good (unreachable);
other 4xx permanent; 429, 5xx and timeouts retryable. docs/channels.md shows receivers how to verify.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from channels.base import ErrorClass, Message, SendResult
from channels.http import HttpAdapter, failed, status_class
from domain.channels.signatures import nudge_signature


class WebhookChannel(HttpAdapter):
    name = "webhook"

    def __init__(self, secret: str, *, timeout: float = 10, concurrency: int = 16,
                 transport: httpx.AsyncBaseTransport | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(timeout=timeout, concurrency=concurrency, transport=transport)
        self.secret = secret
        self.clock = clock

    def body(self, message: Message) -> bytes:
        payload: dict[str, Any] = message.data or {"subject": message.subject, "text": message.text}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        return {**message.headers, "Content-Type": "application/json",
                "Nudge-Signature": nudge_signature(self.secret, body, int(self.clock())),
                "Nudge-Delivery": message.key}

    async def send_one(self, message: Message) -> SendResult:
        target = urlsplit(message.to or "")
        if target.scheme not in ("http", "https") or not target.hostname:
            return failed(message, f"no http(s) webhook URL: {message.to!r}", ErrorClass.UNREACHABLE)
        body = self.body(message)
        response = await self.client.post(message.to or "", content=body, headers=self.headers(message, body))
        if response.is_success:
            return SendResult(message.key, True, provider_message_id=response.headers.get("Nudge-Receipt",
                                                                                          message.key))
        error = f"webhook {response.status_code}: {response.text[:200]}"
        if response.status_code == 410:
            return failed(message, error, ErrorClass.UNREACHABLE)
        return failed(message, error, status_class(response.status_code))
