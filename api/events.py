"""Segment-compatible tracking API: /v1/track, identify, page, screen, group, alias and batch.

Write key = an `ingest`-scoped API key, sent as the HTTP Basic username (what Segment and RudderStack
SDKs do) or as a Bearer token. Bodies may be gzip-compressed.
"""

from __future__ import annotations

import asyncio
import binascii
import uuid
import zlib
from base64 import b64decode
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg.errors
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasicCredentials
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as AsgiScope

from api import errors
from api.deps import KnownKeys, basic, bearer, runtime
from api.hygiene import body_limit
from api.schemas.events import CALLS, Accepted
from domain import hygiene
from domain.errors import DomainError
from domain.events import (
    MAX_BATCH_BYTES,
    MAX_EVENT_BYTES,
    Event,
    InvalidEvent,
    PayloadTooLarge,
    parse_batch,
    parse_event,
)
from domain.hygiene import NotJson
from domain.keys import Scope
from store.db import plain_url, refused_value, unavailable
from store.events.insert import IdentityRace, IngestResult
from store.ingest import BatchWriter, ingest, refusal

router = APIRouter(prefix="/v1", tags=["ingest"])
# Retried: races with concurrent batches, and a lost or killed database connection (store.db.unavailable: a server
# restart, a failover, an administrator's pg_terminate_backend). Retrying is exact either way: the batch rolled
# back, or it committed and its message ids make the retry store nothing. Not retried: a value the database
# refuses (store.db.refused_value), the batch's own fault, answered with a 400 naming the event.
RACES = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure, psycopg.errors.UniqueViolation,
         IdentityRace)
ATTEMPTS = 4


def write_key(authorization: str | None) -> str | None:
    """The write key in an `Authorization` header: a Bearer token, or the HTTP Basic username (what Segment
    and RudderStack SDKs send)."""
    scheme, _, value = (authorization or "").partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            return b64decode(value.strip(), validate=True).decode().partition(":")[0] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


class WriteKeys(KnownKeys):
    """api.deps' key memory for the tracking calls: at hundreds of batches a second the key lookup would cost a
    connection and a query per request. The key may come as the HTTP Basic username (Segment's SDKs), the answers
    speak of write keys, and a key is remembered 10 s (a revoked one stops working within that). Each request,
    remembered or not, counts against its key's ingest rate limit (api/limits.py)."""

    unknown = "This write key is unknown or revoked; create one with `nudge keys create --scope ingest`."
    challenge = "Basic"

    def __init__(self) -> None:
        super().__init__(ttl=10.0)

    def refusal(self, granted: list[Scope], scope: Scope) -> str:
        return f"This API key has scope(s) [{', '.join(granted)}]; sending events needs the `{scope}` scope."

    async def __call__(
        self, request: Request,
        token: HTTPAuthorizationCredentials | None = Depends(bearer),
        basic_auth: HTTPBasicCredentials | None = Depends(basic),
    ) -> None:
        secret = (token.credentials if token else None) or (basic_auth.username if basic_auth else None)
        await self.check(request, secret)

    async def check(self, request: Request, secret: str | None) -> None:
        if not secret:
            raise HTTPException(401, "Send your write key (an `ingest` API key) as the HTTP Basic username or as "
                                     "`Authorization: Bearer <key>`.", headers={"WWW-Authenticate": "Basic"})
        await self.scopes(request, secret, Scope.INGEST)


WRITE_KEYS = WriteKeys()
WriteKey = Depends(WRITE_KEYS)


def _new_id() -> str:
    return str(uuid.uuid4())


async def read_json(request: Request, limit: int) -> tuple[Any, int]:
    """The decoded JSON body and its size, refusing more than `limit` bytes of JSON (after gunzip). The fast path
    bypasses api/hygiene.py's layer, so this applies its rules itself, on the bytes it has anyway."""
    too_large = PayloadTooLarge(f"The request body is larger than {limit // 1024} KB, Segment's limit for this "
                                f"endpoint; send fewer or smaller events per request.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    if "gzip" in request.headers.get("content-encoding", "").lower():
        try:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = inflater.decompress(bytes(body), limit + 1)
        except zlib.error:
            raise InvalidEvent("The body says `Content-Encoding: gzip` but is not valid gzip.") from None
        if len(data) > limit or inflater.unconsumed_tail:
            raise too_large
    else:
        data = bytes(body)
    try:  # also refuses a NUL, a lone surrogate or nesting too deep, naming where (domain/hygiene.py)
        return hygiene.loads(data), len(data)
    except NotJson as exc:
        raise InvalidEvent(f"The body {exc.problem}.") from None


def _writer(request: Request) -> BatchWriter:
    state = request.app.state
    if getattr(state, "ingest_writer", None) is None:
        state.ingest_writer = BatchWriter(plain_url(runtime(request).settings.database_url or ""))
    return state.ingest_writer  # type: ignore[no-any-return]


def _accepted(result: IngestResult) -> Response:
    body = {"success": True, "received": result.received, "inserted": result.inserted}
    return Response(orjson.dumps(body), media_type="application/json")


async def _store(request: Request, events: list[Event]) -> Response:
    """Plain events for known people take the one-statement path; the rest get one transaction that
    resolves identities first. A race with a concurrent batch, or a lost database connection, is retried: the
    batch rolled back or committed whole, and message ids make the retry exact. A connection lost on every
    attempt is a 503 with Retry-After, which Segment's libraries retry. A value the database refuses fails only
    this request (the batching writer isolates it from its neighbours): a 400 naming the event."""
    sessions = runtime(request).sessions
    for attempt in range(ATTEMPTS):
        try:
            result = await _writer(request).write(events)
            if result is None:
                async with sessions() as session, session.begin():
                    result = await ingest(session, events)
            return _accepted(result)
        except Exception as exc:
            if refused_value(exc):  # a value of this batch, not the connection: its own 400, nothing stored
                async with sessions() as session, session.begin():
                    raise await refusal(session, events, exc) from exc
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            lost = unavailable(exc) and not isinstance(exc, PoolTimeout)  # a full pool has waited long enough
            if not lost and not isinstance(cause, RACES):
                raise
            if attempt < ATTEMPTS - 1:
                if lost:
                    await asyncio.sleep(0.05 * (attempt + 1))  # give the server a moment to come back
                continue
            if lost:
                raise HTTPException(503, "The event store did not answer, so this batch may not be stored; send "
                                         "the same batch again (its message ids make the retry safe).",
                                    headers={"Retry-After": "1"}) from exc
            raise
    raise AssertionError("unreachable")


def _call(type_: str) -> Callable[[Request], Awaitable[Response]]:
    @body_limit(MAX_EVENT_BYTES, raw=True)  # read_json caps and checks the (maybe gzipped) body itself
    async def handle(request: Request) -> Response:
        received_at = datetime.now(UTC)
        raw, _ = await read_json(request, MAX_EVENT_BYTES)
        event = parse_event(raw, type_=type_, received_at=received_at, sent_at=None, new_id=_new_id)
        return await _store(request, [event])

    return handle


def _event_size(item: Any) -> int:
    return len(orjson.dumps(item))


@body_limit(MAX_BATCH_BYTES, raw=True)
async def batch(request: Request) -> Response:
    received_at = datetime.now(UTC)
    raw, length = await read_json(request, MAX_BATCH_BYTES)
    # No item can exceed the per-event limit if the whole body does not; skip measuring then.
    size = _event_size if length > MAX_EVENT_BYTES else None
    return await _store(request, parse_batch(raw, received_at=received_at, new_id=_new_id, event_size=size))


def _body_doc(name: str) -> dict[str, Any]:
    schema = CALLS[name].model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


for _name in ("track", "identify", "page", "screen", "group", "alias"):
    router.add_api_route(
        f"/{_name}", _call(_name), methods=["POST"], response_model=Accepted, dependencies=[WriteKey],
        summary=f"Segment `{_name}` call", openapi_extra=_body_doc(_name),
        description="Segment HTTP Tracking API compatible; at most 32 KB. Answers 400 for invalid calls "
                    "(nothing stored), 413 for bodies over the limit and 503 (Retry-After) when the event store "
                    "does not answer; resending the same call is always safe.",
    )
router.add_api_route(
    "/batch", batch, methods=["POST"], response_model=Accepted, dependencies=[WriteKey],
    summary="Segment batch: many calls in one request", openapi_extra=_body_doc("batch"),
    description="Up to 2500 calls, 500 KB in all (413 beyond), 32 KB per call (400 beyond). The whole batch "
                "is stored in one transaction; a retried batch stores nothing twice. 503 (Retry-After): the event "
                "store did not answer; send the same batch again.",
)


class FastPath:
    """The tracking calls answered straight from ASGI. At hundreds of requests a second, FastAPI's route
    matching and dependency solving cost about as much CPU as parsing the events themselves, so POSTs to
    the paths above skip them: the same endpoint functions, the same write-key check, the same problem+json
    errors and the same metrics route label. The FastAPI routes stay: they are the OpenAPI spec, and they
    answer wherever this middleware is not installed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes = {r.path: r for r in router.routes if isinstance(r, APIRoute)}

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive)
        response: Response
        try:
            await WRITE_KEYS.check(request, write_key(request.headers.get("authorization")))
            response = await route.endpoint(request)
        except DomainError as exc:
            response = errors.domain_problem(exc)
        except HTTPException as exc:
            response = errors.http_problem(exc)
        except Exception as exc:  # the app's handlers are behind this middleware: outages answered here too
            if (outage := errors.outage_problem(exc)) is None:
                raise
            response = outage
        await response(scope, receive, send)
