"""The input-hygiene layer in front of every route, as plain ASGI (nudge/app.py installs it once):

- a NUL in the URL path, the query or a header is a 400 before routing, naming the parameter;
- a request body is capped at its route's limit (DEFAULT_MAX_BODY unless the endpoint declares `@body_limit`):
  413 from Content-Length before a byte is read, or as soon as a chunked body passes it;
- a JSON body the app will parse is checked whole before the app sees it (domain/hygiene.py: no NUL, no lone
  surrogate, no NaN, nesting bounded): a 400 naming the JSON path.

So a route added later is covered without doing anything. The tracking API's fast path (api/events.py) sits in
front of this layer and applies the same rules itself, to keep its per-request cost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import errors
from domain.hygiene import BadInput, check_json, text_problem

MB = 1024 * 1024
# An ordinary body (a contact, a rule, a posting) is a few KB; the largest, a campaign's HTML template, is best kept
# under the 102 KB at which Gmail clips a message. 1 MB holds either ten times over. Routes that take more say so
# with @body_limit: lists of up to 100,000 contact ids, member CSVs, and the tracking calls (Segment's own limits).
DEFAULT_MAX_BODY = 1 * MB
# 100,000 ids of up to 19 digits with separators are about 2.1 MB; the rest of such a body is small.
ID_LIST_BODY = 4 * MB

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def body_limit(max_bytes: int, *, raw: bool = False) -> Callable[[Endpoint], Endpoint]:
    """Declare an endpoint's body cap, under its route decorator. `raw`: the endpoint reads and checks the body
    itself (CSV, gzip-encoded events), so this layer only counts its bytes."""

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.max_body_bytes = max_bytes  # type: ignore[attr-defined]
        endpoint.raw_body = raw  # type: ignore[attr-defined]
        return endpoint

    return declare


class Refused(HTTPException):
    """A refusal raised from inside the app's body read: FastAPI lets HTTPExceptions through to the problem+json
    handler (any other exception there would become a bare 400)."""

    def __init__(self, status: int, field: str, problem: str) -> None:
        super().__init__(status, f"{field}: {problem}")
        self.errors = [{"field": field, "message": problem}]


class Hygiene:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = _parameter_problem(scope)
        if refused is not None:
            response = errors.domain_problem(refused)
            await response(scope, receive, send)
            return
        await self.app(scope, _Body(scope, receive), send)


def _parameter_problem(scope: Scope) -> BadInput | None:
    """A NUL anywhere in the path or query (raw or percent-encoded) or in a header's raw bytes."""
    path: str = scope["path"]
    if "\x00" in path:
        segment = next(s for s in path.split("/") if "\x00" in s)
        return BadInput("path", f"the segment {segment!r} contains a NUL character (%00); remove it")
    query: bytes = scope["query_string"]
    if b"%00" in query or b"\x00" in query:
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            if (problem := text_problem(name + value)) is not None:
                return BadInput(f"query.{name.replace(chr(0), '?')}", problem)
    for name, value in scope["headers"]:  # (a key, with a NUL in any form, is refused by its format: a 401)
        if b"\x00" in value:
            return BadInput(f"header.{name.decode('latin-1')}", "contains a NUL character; remove it")
    return None


class _Body:
    """The request's receive channel, capped at the matched route's limit. The route is known by the first read
    (the router has matched by then), so the cap is looked up then, and Content-Length checked before reading."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.limit = -1  # not started
        self.seen = 0

    async def __call__(self) -> Message:
        if self.limit < 0:
            endpoint = self.scope.get("endpoint")
            self.limit = getattr(endpoint, "max_body_bytes", DEFAULT_MAX_BODY)
            headers = dict(self.scope["headers"])
            declared = headers.get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.limit:
                raise self._too_large()
            if not getattr(endpoint, "raw_body", False) and _parsed_as_json(headers):
                return await self._whole_json()
        return self._count(await self.receive())

    def _count(self, message: Message) -> Message:
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise self._too_large()
        return message

    async def _whole_json(self) -> Message:
        chunks = []
        while True:
            message = self._count(await self.receive())
            if message["type"] != "http.request":
                return message  # the client went away
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_json(body)
        except BadInput as exc:
            raise Refused(400, exc.field, exc.problem) from None
        return {"type": "http.request", "body": body, "more_body": False}

    def _too_large(self) -> Refused:
        return Refused(413, "body", f"is larger than this endpoint's limit of {_size(self.limit)}; send less per "
                                    f"request")


def _parsed_as_json(headers: dict[bytes, bytes]) -> bool:
    """Whether FastAPI will decode this body as JSON (its own test: an application/json or +json type; a body
    with a content encoding is not decoded at all)."""
    if headers.get(b"content-encoding", b"identity").strip().lower() != b"identity":
        return False
    kind = headers.get(b"content-type", b"application/json").split(b";", 1)[0].strip().lower()
    return kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def _size(n: int) -> str:
    return f"{n // MB} MB" if n % MB == 0 else f"{n // 1024} KB"
