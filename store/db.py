"""Engines and sessions. Callers own the transaction; services take a session and never open one."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import psycopg.errors
from psycopg import AsyncConnection, connect, sql
from psycopg.types.json import set_json_loads
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

LONG_NUMBER = re.compile(rb"[0-9]{19}")


def json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """JSON from Postgres, as the standard library reads it, with orjson (several times faster) wherever the two
    agree: not where a number has 19 digits or more in a row (an integer beyond 64 bits, which orjson would round
    to a float) nor where orjson refuses (a number beyond a double's range, which jsonb can hold)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if LONG_NUMBER.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


set_json_loads(json_loads)  # every connection of the process: json and jsonb values


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+psycopg:// and return the psycopg 3 form."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://", "postgresql+asyncpg://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def plain_url(url: str) -> str:
    """The libpq form (for psycopg.connect, pgbench and psql)."""
    return async_url(url).replace("postgresql+psycopg://", "postgresql://", 1)


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 10) -> AsyncEngine:
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True,
        connect_args={"application_name": "nudge"},
    )


def make_outcome_engine(url: str, *, pool_size: int) -> AsyncEngine:
    """Autocommit connections whose commits do not wait for the disk: one round trip per recorded outcome.

    For facts that a retry can re-derive (a delivery's sent marker): a crash of Postgres itself may lose
    the last fraction of a second of them, a crash of the worker loses none.
    """
    return create_async_engine(
        async_url(url), pool_size=pool_size, max_overflow=pool_size, pool_recycle=300,
        isolation_level="AUTOCOMMIT",
        connect_args={"application_name": "nudge-outcomes", "options": "-c synchronous_commit=off"},
    )


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session, session.begin():
        yield session


async def driver(session: AsyncSession) -> AsyncConnection[Any]:
    """The session's psycopg connection, inside the session's transaction (for COPY and bulk SQL)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


async def ping(session: AsyncSession) -> None:
    """One round trip to the database (the health check)."""
    await session.execute(text("SELECT 1"))


def create_database(admin_url: str, name: str) -> bool:
    """Create database `name` on the server of `admin_url` (libpq form) unless it exists; whether it was created."""
    with connect(admin_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True


def _cause(exc: BaseException) -> BaseException:
    """The driver's exception inside SQLAlchemy's wrapper."""
    return exc.orig if isinstance(exc, sa_exc.DBAPIError) and exc.orig is not None else exc


# orjson's encode error is TypeError itself: only these messages are about the input, not about the code.
_UNENCODABLE = ("Recursion limit reached", "str is not valid UTF-8")


def refused_value(exc: BaseException) -> bool:
    """Whether the database, or the driver before sending, refused a value it was given: text with NUL, a JSON
    escape Postgres cannot store, a number or time out of range, an index entry too large, JSON nested too deep
    to encode or to parse. The input's fault: the same value fails again alone, its neighbours' values do not."""
    cause = _cause(exc)
    if isinstance(cause, orjson.JSONEncodeError):
        return str(cause).startswith(_UNENCODABLE)
    return isinstance(cause, psycopg.DataError | psycopg.errors.ProgramLimitExceeded | UnicodeEncodeError)


def refusal_reason(exc: BaseException) -> str:
    """What was refused, in the database's words when it has them (not the statement or its parameters)."""
    cause = _cause(exc)
    if isinstance(cause, UnicodeEncodeError):
        return "text that is not valid Unicode (a lone surrogate)"
    if isinstance(cause, psycopg.Error) and cause.diag.message_primary:
        detail = cause.diag.message_detail
        return cause.diag.message_primary + (f": {detail}" if detail else "")
    return str(cause).splitlines()[0] if str(cause) else cause.__class__.__name__


def unavailable(exc: BaseException) -> bool:
    """Whether the database could not be reached or the connection was lost (a restart, a failover, a killed
    backend, too many connections, an exhausted pool): nobody's request is at fault and the same one can
    succeed later."""
    if isinstance(exc, sa_exc.TimeoutError) or (isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated):
        return True
    cause = _cause(exc)
    # Postgres files its program limits (an index row too large, a statement too complex) under the same class.
    return isinstance(cause, psycopg.OperationalError | psycopg.InterfaceError) and not refused_value(cause)
