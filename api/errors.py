"""Every error is application/problem+json (RFC 9457) with a detail a user can act on. A dependency that cannot
be reached (Postgres, Temporal) is a 503 with Retry-After on every route, whichever call found it down."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from temporalio.service import RPCError, RPCStatusCode

from domain.errors import DomainError
from store.db import unavailable

PROBLEM = "application/problem+json"
RETRY_AFTER = "1"  # seconds: a restart or a failover is over in a few, and clients back off further themselves
TEMPORAL_DOWN = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED)
# Where an outage can surface: the driver itself, SQLAlchemy's wrappers and pool, Temporal's client. Each handler
# answers 503 only for an outage (store.db.unavailable) and re-raises anything else, a server error as before.
OUTAGES = (psycopg.OperationalError, psycopg.InterfaceError, DBAPIError, PoolTimeout, RPCError)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _location(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "body"


TITLES = {400: "Invalid input", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 413: "Payload too large", 429: "Too many requests", 503: "Service unavailable"}


def _fields(exc: Exception) -> dict[str, Any]:
    """The fields an input refusal names (domain.hygiene.BadInput, api.hygiene.Refused), like a 422's `errors`."""
    errors = getattr(exc, "errors", None)
    return {"errors": errors} if isinstance(errors, list) else {}


def domain_problem(exc: DomainError) -> JSONResponse:
    return problem(exc.status, exc.title, str(exc), **_fields(exc))


def http_problem(exc: HTTPException) -> JSONResponse:
    response = problem(exc.status_code, TITLES.get(exc.status_code, "Error"), str(exc.detail), **_fields(exc))
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    if exc.status_code == 503 and "retry-after" not in response.headers:
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def outage_problem(exc: BaseException) -> JSONResponse | None:
    """The 503 for an exception that says Postgres or Temporal could not be reached; None for any other."""
    if unavailable(exc):
        dependency = "The database"
    elif isinstance(exc, RPCError) and exc.status in TEMPORAL_DOWN:
        dependency = "Temporal"
    else:
        return None
    response = problem(503, TITLES[503], f"{dependency} did not answer (it may be restarting), so this request may "
                                         "not have been carried out; send it again in a moment.")
    response.headers["Retry-After"] = RETRY_AFTER
    return response


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(422, "Invalid request", f"Fix these fields and retry: {detail}", errors=errors)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return http_problem(exc)

    async def outage(_: Request, exc: Exception) -> Response:
        response = outage_problem(exc)
        if response is None:
            raise exc
        return response

    for kind in OUTAGES:
        app.add_exception_handler(kind, outage)
