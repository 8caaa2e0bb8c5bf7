"""What the HTTP adapters share: one pooled `httpx.AsyncClient` per adapter, bounded concurrency, and the
classification of transport failures and HTTP statuses into `ErrorClass`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from channels.base import ErrorClass, Message, SendResult


class CachedToken:
    """A provider access token shared by every message in flight (FCM's OAuth token, WeChat's access_token):
    fetched when missing, near expiry, or when it is the one the provider just refused (`stale`); concurrent
    callers wait for one fetch. `fetch(now)` returns the token and its lifetime in seconds."""

    def __init__(self, fetch: Callable[[float], Awaitable[tuple[str, float]]],
                 clock: Callable[[], float] = time.time, *, margin: float = 60) -> None:
        self.fetch = fetch
        self.clock = clock
        self.margin = margin  # seconds before expiry the token is replaced
        self._token: str | None = None
        self._expires_at = 0.0
        self._refreshing: asyncio.Lock | None = None  # made on first use: a lock binds to the loop that uses it

    def _fresh(self, stale: str | None) -> str | None:
        if self._token and self._token != stale and self.clock() < self._expires_at - self.margin:
            return self._token
        return None

    async def get(self, *, stale: str | None = None) -> str:
        if (token := self._fresh(stale)) is not None:
            return token
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            if (token := self._fresh(stale)) is not None:
                return token
            now = self.clock()
            self._token, lifetime = await self.fetch(now)
            self._expires_at = now + lifetime
            return self._token


def status_class(status: int) -> ErrorClass:
    """429 and 5xx are worth retrying; any other refusal is permanent."""
    return ErrorClass.RETRYABLE if status == 429 or status >= 500 else ErrorClass.NON_RETRYABLE


def json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


def failed(message: Message, error: str, error_class: ErrorClass) -> SendResult:
    return SendResult(message.key, False, error=error[:500], error_class=error_class)


class HttpAdapter:
    """Base of the HTTP adapters: `send_many` runs `send_one` for each message, `concurrency` at a time, over
    one connection pool. A timeout or a dropped connection is a retryable failure of that message: the provider
    may have accepted it, which is why every adapter sends the delivery key as the provider's idempotency key."""

    name = "http"

    def __init__(self, *, timeout: float = 10, concurrency: int = 16,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.concurrency = concurrency
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._transport = transport

    @property
    def client(self) -> httpx.AsyncClient:
        # Built lazily: an AsyncClient binds to the event loop that first uses it, and the registry builds
        # adapters before any loop runs.
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, transport=self._transport,
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                headers={"User-Agent": "Nudge/1.0"},
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        # A semaphore per call, not per adapter: an asyncio primitive binds to one event loop, and the
        # connection pool's limit already bounds concurrent batches together.
        semaphore = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._bounded(semaphore, m, self.send_one) for m in messages)))

    async def _bounded(self, semaphore: asyncio.Semaphore, message: Message,
                       send: Callable[[Message], Awaitable[SendResult]]) -> SendResult:
        async with semaphore:
            try:
                return await send(message)
            except httpx.TimeoutException as exc:
                return failed(message, f"{self.name}: provider timed out ({type(exc).__name__})", ErrorClass.RETRYABLE)
            except httpx.TransportError as exc:
                return failed(message, f"{self.name}: cannot reach the provider: {exc!r}", ErrorClass.RETRYABLE)

    async def send_one(self, message: Message) -> SendResult:
        raise NotImplementedError
