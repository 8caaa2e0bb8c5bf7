"""The FastAPI application: routers, problem+json errors, metrics, dashboards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import Client

from api import (
    campaigns,
    channels,
    contacts,
    docs,
    errors,
    events,
    health,
    journeys,
    ledger,
    promotions,
    segments,
    tasks,
)
from api.hygiene import Hygiene
from api.limits import Limits
from api.promotions import pricing
from api.runtime import Runtime, connect_temporal, tune_gc, untune_gc
from core.settings import Settings, get_settings
from dashboards import routes as dashboards
from nudge import __version__

REQUESTS = Counter("nudge_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("nudge_http_request_seconds", "HTTP request latency", ["method", "route"])

DESCRIPTION = """
Nudge is an open-source marketing automation platform on Temporal and Postgres.

Authenticate with an API key: `Authorization: Bearer nk_...`. Keys have scopes: `admin` (everything),
`read` (read-only), `ingest` (events only) and `approve` (approving other keys' campaigns; `admin` implies it).
Create one with `nudge keys create --scope admin`.
Errors are `application/problem+json` with a `detail` that says what to fix. Each key's requests are rate-limited
(by default 100 a second in bursts of 200, and 2,000 a second in bursts of 4,000 on the tracking calls): beyond, a
429 with `Retry-After`.

Every endpoint refuses, with a 400 naming the field, a NUL character or a lone UTF-16 surrogate in any string (URL,
query, header or JSON body, keys included), NaN or infinite numbers, and JSON nested deeper than 64 levels. Request
bodies are capped at 1 MB unless an endpoint says otherwise (413 beyond); ids are from 1 to 2^63 - 1024 (422 beyond).
"""


class TemporalHandle:
    """Connects on first use and retries later if Temporal was not up yet."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client | None:
        if self.client is None:
            async with self._lock:
                if self.client is None:
                    try:
                        self.client = await asyncio.wait_for(connect_temporal(self.settings), 5)
                    except Exception:  # noqa: BLE001 - reported to the caller as unavailable
                        return None
        return self.client


class Measure:
    """Request count and latency per route, as plain ASGI: Starlette's `BaseHTTPMiddleware` runs every
    request in its own task behind memory streams, which cost more than a small ingest batch's parse."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before answering

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime.build(settings)
        app.state.temporal = TemporalHandle(settings)
        tune_gc()
        try:
            async with pricing.serving(app):  # the rule-set cache's listener, the quotes' connections
                yield
        finally:
            untune_gc()
            await app.state.runtime.close()

    app = FastAPI(title="Nudge", version=__version__, description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)  # served from vendored files by api.docs
    app.state.temporal_ui = settings.temporal_ui_url
    app.state.limits = Limits.from_settings(settings)  # per-key rate limits, this process's (api/limits.py)
    errors.install(app)
    for module in (health, contacts, campaigns, dashboards, events, segments, ledger, channels, tasks, promotions,
                   journeys):
        app.include_router(module.router)
    dashboards.mount_static(app)
    docs.install(app)

    app.add_middleware(pricing.QuoteFastPath)  # behind Hygiene: quotes skip FastAPI's routing, not its checks
    app.add_middleware(Hygiene)  # every route's input checked before it is routed or read (api/hygiene.py)
    app.add_middleware(events.FastPath)  # in front: the tracking calls apply the same rules themselves, cheaper
    app.add_middleware(Measure)  # added last: outermost, so it measures the fast path too
    return app
