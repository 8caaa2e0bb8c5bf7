"""What the provider simulators share: per-address behaviour rules, the JSON-lines inbox, delayed callbacks, the
`/_sim/...` control endpoints, and serving them with uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route


class Action(StrEnum):
    """What a simulator does with a message to an address."""

    DELIVER = "deliver"              # accept, report delivered after the delay
    UNREACHABLE = "unreachable"      # refuse: the address does not exist (Twilio 21211, FCM UNREGISTERED, WeChat 43004)
    INVALID = "invalid"              # refuse: a malformed address (FCM INVALID_ARGUMENT token, WeChat 40003)
    REJECT = "reject"                # refuse permanently for another reason (region not enabled, sender mismatch)
    BUSY = "busy"                    # refuse for now: throttled (Twilio 429/20429, FCM 429, WeChat 45009)
    TIMEOUT = "timeout"              # answer nothing for `hang_seconds`, then 503
    UNDELIVERED = "undelivered"      # accept, then report failure
    SILENT = "silent"                # accept, never report


@dataclass
class Rule:
    action: Action
    address: str | None = None
    prefix: str | None = None

    def matches(self, address: str) -> bool:
        return address == self.address if self.address is not None else address.startswith(self.prefix or "")


@dataclass
class Behaviour:
    """Per-address rules: those posted to `/_sim/behaviour` (newest first), then the simulator's default prefixes."""

    defaults: dict[str, Action]
    callback_delay: float = 1.0
    hang_seconds: float = 30.0
    rules: list[Rule] = field(default_factory=list)

    def action(self, address: str) -> Action:
        for rule in self.rules:
            if rule.matches(address):
                return rule.action
        for prefix, action in self.defaults.items():
            if address.startswith(prefix):
                return action
        return Action.DELIVER

    def reset(self) -> None:
        self.rules.clear()


class Inbox:
    """What a simulator accepted, one JSON object a line in `{directory}/{provider}.jsonl` (as the mail sink keeps
    .eml files), so the dev-inbox dashboard and the tests read it from the file."""

    def __init__(self, directory: Path, provider: str) -> None:
        self.path = directory / f"{provider}.jsonl"
        self._lock = threading.Lock()

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(), **record}, ensure_ascii=False)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")

    def read(self, limit: int | None = None) -> list[dict[str, Any]]:
        return read_inbox(self.path.parent, self.path.stem, limit)


def read_inbox(directory: Path, provider: str, limit: int | None = None) -> list[dict[str, Any]]:
    """A simulator's inbox, oldest first (or the newest `limit`, still oldest first)."""
    path = directory / f"{provider}.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if limit is not None:
        lines = lines[-limit:] if limit else []
    return [json.loads(line) for line in lines if line.strip()]


class ProviderSimulator:
    """One provider: its routes under `/{name}`, its behaviour, inbox and counters, and delayed callbacks."""

    name = "provider"
    defaults: dict[str, Action] = {}

    def __init__(self, directory: Path, *, callback_delay: float = 1.0) -> None:
        self.behaviour = Behaviour(dict(self.defaults), callback_delay=callback_delay)
        self.inbox = Inbox(directory, self.name)
        self.stats: dict[str, int] = {"sends": 0, "accepted": 0, "token_requests": 0, "callbacks_posted": 0,
                                      "callbacks_failed": 0}
        self._pending: set[asyncio.Task[None]] = set()

    def routes(self) -> list[BaseRoute]:
        raise NotImplementedError

    def control_routes(self) -> list[BaseRoute]:
        return [Route("/", self._about, methods=["GET"]),
                Route("/_sim/behaviour", self._behaviour, methods=["GET", "POST", "DELETE"]),
                Route("/_sim/inbox", self._inbox, methods=["GET"]),
                Route("/_sim/stats", self._stats, methods=["GET"])]

    def control(self, body: dict[str, Any]) -> None:
        """Apply a `/_sim/behaviour` body: `{"address"|"prefix", "action"}` adds a rule; `callback_delay`,
        `hang_seconds` set timings; `reset` drops the posted rules."""
        if body.get("reset"):
            self.behaviour.reset()
        if "callback_delay" in body:
            self.behaviour.callback_delay = float(body["callback_delay"])
        if "hang_seconds" in body:
            self.behaviour.hang_seconds = float(body["hang_seconds"])
        if "action" in body:
            action = Action(body["action"])
            if "address" in body:
                self.behaviour.rules.insert(0, Rule(action, address=str(body["address"])))
            elif "prefix" in body:
                self.behaviour.rules.insert(0, Rule(action, prefix=str(body["prefix"])))
            else:
                raise ValueError('a rule needs "address" or "prefix"')

    async def _behaviour(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.behaviour.reset()
        elif request.method == "POST":
            try:
                body = await request.json()
                if not isinstance(body, dict):
                    raise ValueError("the body must be a JSON object")
                self.control(body)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        b = self.behaviour
        rules = [{"action": r.action, "address": r.address, "prefix": r.prefix} for r in b.rules]
        return JSONResponse({"callback_delay": b.callback_delay, "hang_seconds": b.hang_seconds,
                             "defaults": b.defaults, "rules": rules})

    async def _about(self, request: Request) -> Response:
        return JSONResponse({"simulator": self.name, "stats": self.stats,
                             "control": ["/_sim/behaviour", "/_sim/inbox", "/_sim/stats"]})

    async def _inbox(self, request: Request) -> Response:
        return JSONResponse(self.inbox.read())

    async def _stats(self, request: Request) -> Response:
        return JSONResponse(self.stats)

    async def hang(self) -> Response:
        await asyncio.sleep(self.behaviour.hang_seconds)
        return Response("upstream timed out", status_code=503)

    def report_later(self, post: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]) -> None:
        """Run `post` after the callback delay, in the background, as the provider's delivery report."""

        async def later() -> None:
            await asyncio.sleep(self.behaviour.callback_delay)
            try:
                async with httpx.AsyncClient(timeout=10) as client:
                    response = await post(client)
                self.stats["callbacks_posted" if response.is_success else "callbacks_failed"] += 1
            except httpx.HTTPError:
                self.stats["callbacks_failed"] += 1

        task = asyncio.get_running_loop().create_task(later())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)


class TokenIssuingSimulator(ProviderSimulator):
    """A provider that hands out access tokens with a lifetime (FCM's OAuth endpoint, WeChat's `cgi-bin/token`).
    `{"expire_tokens": true}` expires every token issued so far; `{"token_ttl": N}` sets the next ones' lifetime."""

    def __init__(self, directory: Path, *, token_ttl: int, callback_delay: float = 1.0) -> None:
        super().__init__(directory, callback_delay=callback_delay)
        self.token_ttl = token_ttl
        self._tokens: dict[str, float] = {}  # access token → expiry (unix)

    def expire_tokens(self) -> None:
        self._tokens = dict.fromkeys(self._tokens, 0.0)

    def control(self, body: dict[str, Any]) -> None:
        super().control(body)
        if body.get("expire_tokens"):
            self.expire_tokens()
        if "token_ttl" in body:
            self.token_ttl = int(body["token_ttl"])


def now_unix() -> int:
    return int(time.time())


class ThreadedServer:
    """An ASGI app served by uvicorn on 127.0.0.1 in a daemon thread; port 0 picks a free one. Starts in well
    under a second and stops cleanly (requests still hanging get one second)."""

    def __init__(self, app: Starlette, *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.app = app
        self.host = host
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port = int(self._socket.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off",
                                                     access_log=False, timeout_graceful_shutdown=1))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10) -> None:
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=f"server-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.005)

    def stop(self) -> None:
        if self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
            self._thread = None
        self._socket.close()


class SimulatorServer(ThreadedServer):
    """The simulators mounted under `/{name}` on one server."""

    def __init__(self, simulators: list[ProviderSimulator], *, port: int = 0, host: str = "127.0.0.1") -> None:
        self.simulators = simulators
        super().__init__(Starlette(routes=[Mount(f"/{s.name}", routes=[*s.routes(), *s.control_routes()])
                                           for s in simulators]), port=port, host=host)
