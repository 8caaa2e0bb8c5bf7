"""Shared fixtures: a real Postgres (embedded, or DATABASE_URL), a real Temporal dev server, a real SMTP
sink and the real API over HTTP. Started once per test session; every fixture is session-scoped unless
its name says otherwise.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.segments import EVENTS_CONSUMER
from api.runtime import Runtime
from channels.simulators import Simulators
from core.settings import Settings
from domain.keys import Scope
from nudge.embedded import SEARCH_ATTRIBUTES, EmbeddedPostgres, MailSink, free_port, temporal_binary
from nudge.worker import build_workers
from store import keys
from store.db import plain_url, transaction
from store.events.outbox import OutboxEvent, advance_cursor, read_new_events
from store.migrate import upgrade
from workflows.segments.refresh import ensure_schedules as ensure_segment_workflows


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nudge")


@pytest.fixture(scope="session")
def database_url(workdir: Path) -> Iterator[str]:
    """A fresh, migrated database: on DATABASE_URL's server if set, else on an embedded cluster."""
    server = os.environ.get("DATABASE_URL")
    cluster = None
    if server is None:
        cluster = EmbeddedPostgres(workdir / "pg", free_port(), fast_unsafe=True)
        cluster.start()
        server = cluster.url
    name = f"nudge_test_{uuid.uuid4().hex[:8]}"
    admin = plain_url(server).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = plain_url(server).rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    if cluster is not None:
        cluster.stop()
    else:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def mail_sink(workdir: Path) -> Iterator[MailSink]:
    sink = MailSink(workdir / "mail", free_port())
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES],
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def temporal_address(temporal_client: Client) -> str:
    return temporal_client.service_client.config.target_host


@pytest.fixture(scope="session")
def api_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def simulators(workdir: Path, api_port: int) -> Iterator[Simulators]:
    """The Twilio, FCM and WeChat simulators on a free port, reporting deliveries to the test API's
    `/v1/webhooks/{provider}` after 0.05 s (Twilio: to each message's StatusCallback)."""
    with Simulators(workdir / "simulators", nudge_url=f"http://127.0.0.1:{api_port}", callback_delay=0.05) as sims:
        yield sims


@pytest.fixture(scope="session")
def settings(workdir: Path, database_url: str, temporal_address: str, mail_sink: MailSink, api_port: int,
             simulators: Simulators) -> Settings:
    return Settings(
        home=workdir, database_url=database_url, temporal_address=temporal_address, smtp_url=mail_sink.url,
        api_port=api_port, campaign_batch_size=50, webhook_secret="whsec_test", **simulators.settings(),
    )


@pytest.fixture(scope="session")
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    rt = Runtime.build(settings)
    yield rt
    await rt.close()


@pytest.fixture(scope="session")
def sessions(runtime: Runtime) -> async_sessionmaker[AsyncSession]:
    return runtime.sessions


@pytest.fixture(scope="session")
async def worker(temporal_client: Client, runtime: Runtime) -> AsyncIterator[None]:
    """All of Nudge's workers, in this process, for the whole session."""
    workers = build_workers(temporal_client, runtime)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    yield
    for w in workers:
        await w.shutdown()
    await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def _served(settings: Settings) -> Iterator[str]:
    """The real FastAPI app, for `settings`, served by uvicorn on `settings.api_port` in a background thread."""
    from nudge.app import create_app

    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.api_port, log_level="warning",
                            lifespan="on", timeout_keep_alive=300)  # no keep-alive race with the shared client
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{settings.api_port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        threading.Event().wait(0.05)
    else:
        raise RuntimeError("the API did not start")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="session")
def api_url(settings: Settings) -> Iterator[str]:
    """The real FastAPI app served by uvicorn on a free port, in a background thread."""
    with _served(settings) as url:
        yield url


@pytest.fixture(scope="session")
def serve_api() -> Callable[[Settings], AbstractContextManager[str]]:
    """Serve another instance of the app, as `api_url` does, for tests that need their own database or namespace
    (the fuzzer in tests/api/test_fuzz.py)."""
    return _served


async def _key(sessions: async_sessionmaker[AsyncSession], scope: Scope) -> str:
    async with transaction(sessions) as s:
        return (await keys.create_key(s, f"test {scope}", [scope])).token


@pytest.fixture(scope="session")
async def admin_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await _key(sessions, Scope.ADMIN)


@pytest.fixture(scope="session")
async def read_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await _key(sessions, Scope.READ)


@pytest.fixture(scope="session")
async def ingest_key(sessions: async_sessionmaker[AsyncSession]) -> str:
    return await _key(sessions, Scope.INGEST)


@pytest.fixture(scope="session")
async def ingest(api_url: str, ingest_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the tracking API, sending the ingest key as the Basic username (as Segment SDKs do)."""
    async with httpx.AsyncClient(base_url=api_url, auth=(ingest_key, ""), timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def api(api_url: str, admin_key: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the real API, signed in with an admin key."""
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"},
                                 timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def anon_api(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


DashboardSignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


@pytest.fixture(scope="session")
def dashboard_sign_in() -> DashboardSignIn:
    """Signs an HTTP client in to the dashboards as a browser does: it loads the form (getting the form cookie and
    the CSRF token derived from it), then posts the key with the token. The client keeps the session cookie."""

    async def sign_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
        form = await client.get("/dashboards/login")
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', form.text)
        assert token is not None, form.text
        return await client.post("/dashboards/login", data={"key": key, "csrf": token[1]})

    return sign_in


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Outbox:
    """A test's own event-outbox consumer. The outbox hands over only rows older than every running
    transaction, so a background one (a segment refresh) can hold fresh events back for a moment: like a real
    consumer, `drain` polls."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def start(self, consumer: str) -> None:
        """Register `consumer` at the current end of the outbox."""
        await self.drain(consumer, lambda _: False)

    async def drain(self, consumer: str, keep: Callable[[OutboxEvent], bool], expect: int = 0,
                    timeout: float = 15.0) -> list[OutboxEvent]:
        """Read and advance to the end; the events `keep` picks, waiting up to `timeout` for `expect` of them."""
        kept: list[OutboxEvent] = []
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            async with transaction(self.sessions) as s:
                while batch := await read_new_events(s, consumer, limit=1000):
                    kept += [e for e in batch if keep(e)]
                    await advance_cursor(s, consumer, batch[-1].position)
            if len(kept) >= expect or asyncio.get_running_loop().time() > deadline:
                return kept
            await asyncio.sleep(0.1)


@pytest.fixture(scope="session")
def outbox(sessions: async_sessionmaker[AsyncSession]) -> Outbox:
    return Outbox(sessions)


class SegmentConsumer:
    """The deployment's long-lived segment consumer (workflow `segments-changes`), started the way a worker's
    start-up starts it. `caught_up` waits until it has consumed every event committed before the call."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def caught_up(self, timeout: float = 20.0) -> float:
        """Seconds it took the consumer's cursor to pass the outbox's current end."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with self.sessions() as s:
            end = (await s.execute(text("SELECT o.xid::text AS at, o.id FROM event_outbox o"
                                        " ORDER BY o.xid DESC, o.id DESC LIMIT 1"))).first()
        while end is not None:
            async with self.sessions() as s:
                cursor = (await s.execute(text("SELECT xid::text, outbox_id FROM event_cursors WHERE consumer = :c"),
                                          {"c": EVENTS_CONSUMER})).first()
            if cursor is not None and (int(cursor[0]), cursor[1]) >= (int(end[0]), end[1]):
                break
            if loop.time() - started > timeout:
                raise AssertionError(f"the segment consumer did not catch up in {timeout} s (at {cursor}, end {end})")
            await asyncio.sleep(0.05)
        return loop.time() - started


@pytest.fixture(scope="session")
async def segment_consumer(temporal_client: Client, worker: None,
                           sessions: async_sessionmaker[AsyncSession]) -> SegmentConsumer:
    await ensure_segment_workflows(temporal_client)
    return SegmentConsumer(sessions)
