"""Dependency outages through the real app: while Postgres or Temporal cannot be reached, every route (auth
included) answers 503 problem+json with Retry-After, `/healthz` names what is down, and ingest loses nothing.

The Postgres outage is real but private: a throwaway database on the test server is closed to new connections
(`ALLOW_CONNECTIONS false`) and its backends are terminated, which is what clients see of a restart; the other
tests' database is never touched. The app under test is served in-process over ASGI, with its own pool, batching
writer and Temporal handle."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from fastapi import Request
from psycopg import sql
from sqlalchemy.exc import DBAPIError
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.events import WRITE_KEYS
from api.runtime import create_api_key
from core.settings import Settings
from domain.keys import Scope
from nudge.app import create_app
from nudge.embedded import SEARCH_ATTRIBUTES, free_port, temporal_binary
from store.db import plain_url
from store.migrate import upgrade

PROBLEM = "application/problem+json"


@dataclass
class Throwaway:
    url: str
    admin: str  # the server's `postgres` database, as the test server's superuser
    name: str

    async def take_down(self) -> None:
        """What a restart looks like to clients: every connection dropped, new ones refused."""
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(sql.Identifier(self.name)))
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                               (self.name,))

    async def bring_up(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.admin, autocommit=True) as conn:
            await conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(sql.Identifier(self.name)))


@pytest.fixture
def throwaway(database_url: str) -> Iterator[Throwaway]:
    """A migrated database of its own on the test server, dropped afterwards."""
    server = plain_url(database_url).rsplit("/", 1)[0]
    db = Throwaway(url=f"{server}/nudge_outage_{uuid.uuid4().hex[:8]}", admin=f"{server}/postgres", name="")
    db.name = db.url.rsplit("/", 1)[1]
    with psycopg.connect(db.admin, autocommit=True) as conn:
        row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):
            pytest.skip("closing a database to connections needs a superuser")
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db.name)))
    try:
        upgrade(db.url)
        yield db
    finally:
        with psycopg.connect(db.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))


@asynccontextmanager
async def serve(settings: Settings, **routes: Callable[..., object]) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app (middleware, fast path, handlers) in this event loop, with `routes` added for the test."""
    app = create_app(settings)
    for path, endpoint in routes.items():
        app.add_api_route(f"/{path}", endpoint)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # a crash is a 500, as over HTTP
        async with httpx.AsyncClient(transport=transport, base_url="http://nudge.test", timeout=60) as client:
            yield client
        if (writer := getattr(app.state, "ingest_writer", None)) is not None:
            await writer.close()  # a server leaves it to process exit; this test's event loop goes on


async def until(condition: Callable[[], bool], unexpected: list[httpx.Response], seen: Counter[str]) -> None:
    guard = asyncio.get_running_loop().time() + 120  # a hang guard, not a timing assertion
    while not condition():
        assert not unexpected, [(r.status_code, r.text) for r in unexpected]  # fail now, not at the timeout
        assert asyncio.get_running_loop().time() < guard, f"still waiting; answers so far: {seen}"
        await asyncio.sleep(0.01)


def _kind(r: httpx.Response) -> str:
    """A /v1/batch answer's status and, for a 503, which check met the outage."""
    if r.status_code != 503:
        return str(r.status_code)
    detail = r.json()["detail"]
    if detail.startswith("The event store did not answer"):
        return "503 from the store"  # api.events._store's retries ran out
    return "503 from the key check" if detail.startswith("The database did not answer") else "503"


def assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == PROBLEM and r.headers["retry-after"] == "1", r.headers


async def test_a_database_outage_under_ingest_load_answers_2xx_or_503_and_stores_every_event_once(
        throwaway: Throwaway, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        dashboard_sign_in: Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]) -> None:
    """Four clients send batches (new people and known ones) without pause, resending a batch on each 503 as
    Segment's libraries do. Mid-stream the database goes away: first with the write key cached (the batching
    writer's and the resolving path's retries end in 503), then with it expired, so the key check itself meets
    the outage; an admin route, the dashboard sign-in and /healthz answer meanwhile. Then the database comes
    back. Every answer was a 200 or a 503 with Retry-After, and every event is stored exactly once."""
    ingest_key = await create_api_key(throwaway.url, "outage ingest", [Scope.INGEST])
    admin_key = await create_api_key(throwaway.url, "outage admin", [Scope.ADMIN])
    assert ingest_key and admin_key
    monkeypatch.setattr(WRITE_KEYS, "ttl", 3600.0)  # cached until this test drops it, however slow the machine
    answers: list[httpx.Response] = []
    seen: Counter[str] = Counter()  # answers by status and, for a 503, by which check met the outage
    unexpected: list[httpx.Response] = []
    sent: list[str] = []
    stop = asyncio.Event()

    def record(r: httpx.Response) -> None:
        answers.append(r)
        if r.status_code not in (200, 503):
            unexpected.append(r)
        seen[_kind(r)] += 1

    async with serve(settings.model_copy(update={"database_url": throwaway.url})) as client:
        async def sender(n: int) -> None:
            k = 0
            while not stop.is_set():
                user = f"outage-{n}-{k // 4}"  # each fourth batch names someone new: the resolving path
                batch = [{"type": "track", "userId": user, "event": "tap", "messageId": f"{n}-{k}-{i}"}
                         for i in range(5)]
                while True:
                    r = await client.post("/v1/batch", json={"batch": batch}, auth=(ingest_key, ""))
                    record(r)
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(0.02)  # Retry-After says 1 s; a test need not wait that long
                if r.status_code != 200:
                    return  # asserted below
                sent.extend(e["messageId"] for e in batch)
                k += 1

        senders = [asyncio.create_task(sender(n)) for n in range(4)]
        try:
            await until(lambda: seen["200"] >= 12, unexpected, seen)
            await throwaway.take_down()
            await until(lambda: seen["503 from the store"] >= 3, unexpected, seen)
            WRITE_KEYS.valid.pop(ingest_key, None)  # the cache expires: the key check itself needs the database
            await until(lambda: seen["503 from the key check"] >= 3, unexpected, seen)
            assert_unavailable(await client.get("/v1/contacts", headers={"Authorization": f"Bearer {admin_key}"}))
            assert_unavailable(await dashboard_sign_in(client, admin_key))  # the form needs no database, sign-in does
            health = await client.get("/healthz")
            assert health.status_code == 503 and health.headers["retry-after"] == "1"
            assert health.json()["status"] == "degraded" and health.json()["temporal"] == "ok"
            assert health.json()["database"].startswith("error: ")
            served = seen["200"]
            await throwaway.bring_up()
            await until(lambda: seen["200"] >= served + 12, unexpected, seen)
        finally:
            stop.set()
            await asyncio.gather(*senders)
        assert (await client.get("/healthz")).json() == {"status": "ok", "database": "ok", "temporal": "ok"}

    assert {a.status_code for a in answers} == {200, 503}
    for answer in answers:
        if answer.status_code == 503:
            assert_unavailable(answer)
    async with await psycopg.AsyncConnection.connect(throwaway.url) as conn:
        cur = await conn.execute("SELECT message_id, count(*) FROM events GROUP BY 1")
        stored = dict(await cur.fetchall())
    assert stored == dict.fromkeys(sent, 1)


async def test_a_request_whose_connection_dies_mid_transaction_answers_503_and_changes_nothing(
        throwaway: Throwaway, settings: Settings) -> None:
    """Past the key check, the request's own transaction loses its connection (its backend is killed while it
    waits on a row lock): the `session` dependency rolls back and the client gets a 503 it can retry. (On the
    throwaway database: no background worker there can be waiting on the same lock and be killed instead.)"""
    admin_key = await create_api_key(throwaway.url, "dies admin", [Scope.ADMIN])
    async with serve(settings.model_copy(update={"database_url": throwaway.url})) as client:
        client.headers["Authorization"] = f"Bearer {admin_key}"
        created = await client.post("/v1/contacts", json={"user_id": "dies", "email": "old@example.com"})
        contact = created.json()["id"]
        async with await psycopg.AsyncConnection.connect(throwaway.url) as locker, \
                await psycopg.AsyncConnection.connect(throwaway.url, autocommit=True) as admin:
            await locker.execute("SELECT FROM contacts WHERE id = %s FOR UPDATE", (contact,))
            update = asyncio.create_task(client.patch(f"/v1/contacts/{contact}", json={"email": "new@example.com"}))
            while not update.done():
                await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                    " WHERE %s = ANY(pg_blocking_pids(pid))", (locker.info.backend_pid,))
                await asyncio.sleep(0.01)
            await locker.rollback()
        assert_unavailable(update.result())
        assert (await client.get(f"/v1/contacts/{contact}")).json()["email"] == "old@example.com"


async def test_temporal_unreachable_answers_503_and_healthz_names_it(settings: Settings, admin_key: str) -> None:
    """Temporal never reachable (nothing listens at its address): routes that need it answer 503 with
    Retry-After, /healthz answers 503 naming Temporal, and the rest of the API works."""
    closed = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    auth = {"Authorization": f"Bearer {admin_key}"}
    async with serve(closed) as client:
        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "degraded", "database": "ok",
                                                            "temporal": "unreachable"})
        assert health.headers["retry-after"] == "1"
        assert_unavailable(await client.post("/v1/ledger/reconciliations", json={}, headers=auth))
        assert (await client.get("/v1/contacts", headers=auth)).status_code == 200


async def test_temporal_going_away_after_connecting_answers_503(settings: Settings, admin_key: str) -> None:
    """A Temporal server the app had connected to goes away: /healthz notices (the client object alone would
    say nothing), starting a workflow answers 503 with Retry-After, and an RPC error that reaches the handler
    from any route is a 503 too, while an unrelated database error stays a server error."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES])
    address = env.client.service_client.config.target_host
    auth = {"Authorization": f"Bearer {admin_key}"}

    async def temporal_down(request: Request) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    async def constraint_broken(request: Request) -> None:
        raise DBAPIError("INSERT ...", {}, psycopg.errors.CheckViolation("a bug, not an outage"))

    running = True
    try:
        async with serve(settings.model_copy(update={"temporal_address": address}), temporal_down=temporal_down,
                         constraint_broken=constraint_broken) as client:
            assert (await client.get("/healthz")).json()["temporal"] == "ok"
            await env.shutdown()
            running = False
            health = await client.get("/healthz")
            assert health.status_code == 503 and health.json()["temporal"] == "unreachable"
            assert health.json()["database"] == "ok"
            assert_unavailable(await client.post("/v1/ledger/reconciliations", json={}, headers=auth))
            assert_unavailable(await client.get("/temporal_down"))
            assert (await client.get("/constraint_broken")).status_code == 500
    finally:
        if running:
            await env.shutdown()
