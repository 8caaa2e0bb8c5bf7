"""Fixtures for the adapter tests: settings pointing at the session's provider simulators, the channels the
registry builds from them, and a receiver that records what is posted to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from channels.base import Channel
from channels.registry import build_channels, close_channels
from channels.simulators import Simulators
from channels.simulators.core import ThreadedServer
from core.settings import Settings


@dataclass
class Posted:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP endpoint recording every request; `status` is what it answers (per path, or default)."""

    server: ThreadedServer | None = None
    posted: list[Posted] = field(default_factory=list)
    status: dict[str, int] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def to(self, path: str) -> list[Posted]:
        return [p for p in self.posted if p.url.split("?")[0].endswith(path)]

    async def until(self, check: Callable[[], bool], timeout: float = 10) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not check():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("what was expected was not posted in time")
            await asyncio.sleep(0.02)

    async def wait_for(self, path: str, count: int, timeout: float = 10) -> list[Posted]:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.to(path)) < count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        return self.to(path)


def start_receiver() -> Receiver:
    receiver = Receiver()

    async def record(request: Request) -> Response:
        receiver.posted.append(Posted(str(request.url), dict(request.headers), await request.body()))
        return Response("ok", status_code=receiver.status.get(request.url.path, 200))

    app = Starlette(routes=[Route("/{path:path}", record, methods=["GET", "POST"])])
    receiver.server = ThreadedServer(app)
    receiver.server.start()
    return receiver


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    assert r.server is not None
    r.server.stop()


@pytest.fixture(scope="session")
def channel_settings(simulators: Simulators, mail_sink_url: str, receiver: Receiver) -> Settings:
    """Nudge's public URL is the receiver's: Twilio's StatusCallback points there."""
    return Settings(**simulators.settings(), smtp_url=mail_sink_url, webhook_secret="whsec_test",
                    public_url=receiver.url, channel_timeout_seconds=5)


@pytest.fixture(scope="session")
def mail_sink_url(mail_sink: object) -> str:
    return str(mail_sink.url)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
async def channels(channel_settings: Settings) -> AsyncIterator[dict[str, Channel]]:
    built = build_channels(channel_settings)
    yield built
    await close_channels(built)
