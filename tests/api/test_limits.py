"""Per-key rate limits: the request past a key's burst is a 429 problem+json with Retry-After, a later one passes,
and each key, and each of the two APIs, has its own budget. Time is a fake clock, never a sleep."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from api.limits import Limits, RateLimit
from core.settings import Settings
from nudge.app import create_app


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_burst_then_its_rate() -> None:
    clock = Clock()
    limit = RateLimit("API", 2, 3, setting="rate_limit_api_per_second", clock=clock)
    assert [limit.wait("a") for _ in range(3)] == [0, 0, 0]
    assert limit.wait("a") == pytest.approx(0.5, rel=0.01)
    assert limit.wait("a") == pytest.approx(0.5, rel=0.01)  # a refused request costs nothing
    assert limit.wait("b") == 0  # another key has its own bucket
    clock.now += 0.5
    assert limit.wait("a") == 0 and limit.wait("a") > 0
    clock.now += 10  # idle: the bucket fills up to the burst, no further
    assert [limit.wait("a") for _ in range(4)][-2:] == [0, pytest.approx(0.5, rel=0.01)]


def test_a_steady_rate_passes_at_any_burst() -> None:
    clock = Clock()
    limit = RateLimit("API", 1000, 1, setting="rate_limit_api_per_second", clock=clock)
    for _ in range(10_000):  # exactly the rate, with float steps that do not add up exactly
        assert limit.wait("a") == 0
        clock.now += 0.001


def test_zero_disables_the_limit() -> None:
    limit = RateLimit("API", 0, 1, setting="rate_limit_api_per_second", clock=Clock())
    assert all(limit.wait("a") == 0 for _ in range(1000)) and not limit.full_at


def test_the_state_stays_bounded_by_forgetting_full_buckets() -> None:
    clock = Clock()
    limit = RateLimit("API", 1, 2, setting="rate_limit_api_per_second", clock=clock, max_keys=10)
    for n in range(10):
        limit.wait(f"idle-{n}")
    clock.now += 2  # their buckets are full again: forgetting them changes nothing
    limit.wait("busy")
    limit.wait("busy")
    assert set(limit.full_at) == {"busy"} and limit.wait("busy") > 0


@asynccontextmanager
async def app_with_limits(settings: Settings, clock: Clock, **limits: float) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app (fast path included) with its own small limits on a fake clock, served in-process."""
    configured = settings.model_copy(update=limits)
    app = create_app(configured)
    app.state.limits = Limits.from_settings(configured, clock=clock)  # what create_app made, on the fake clock
    async with app.router.lifespan_context(app):
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://nudge.test") as client:
                yield client
        finally:
            if (writer := getattr(app.state, "ingest_writer", None)) is not None:
                await writer.close()


def _refused(r: httpx.Response, retry_after: str) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["content-type"] == "application/problem+json" and r.headers["retry-after"] == retry_after
    body = r.json()
    assert body["status"] == 429 and body["title"] == "Too many requests" and "Retry-After" in body["detail"]


async def test_the_request_past_a_keys_burst_is_a_429_with_retry_after_and_a_later_one_passes(
        settings: Settings, admin_key: str, read_key: str, ingest_key: str) -> None:
    clock = Clock()
    small = {"rate_limit_api_per_second": 0.5, "rate_limit_api_burst": 3,
             "rate_limit_ingest_per_second": 4, "rate_limit_ingest_burst": 5}
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with app_with_limits(settings, clock, **small) as client:
        # Admin and read API: 3 at once, then one every 2 s.
        for _ in range(3):
            assert (await client.get("/v1/contacts", headers=admin)).status_code == 200
        _refused(await client.get("/v1/contacts", headers=admin), retry_after="2")
        _refused(await client.post("/v1/contacts", json={"user_id": "limited"}, headers=admin), retry_after="2")
        r = await client.get("/v1/contacts", headers={"Authorization": f"Bearer {read_key}"})
        assert r.status_code == 200  # another key, its own budget
        bad = await client.get("/v1/contacts", headers={"Authorization": "Bearer nk_0123_unknown"})
        assert bad.status_code == 401  # refused by the key check: no key's budget is spent
        clock.now += 2
        assert (await client.get("/v1/contacts", headers=admin)).status_code == 200
        _refused(await client.get("/v1/contacts", headers=admin), retry_after="2")

        # The tracking API: its own limit, and the admin key's spent API budget is not its ingest budget.
        async def track(key: str) -> httpx.Response:
            event = {"userId": "limits", "event": "tap", "messageId": uuid.uuid4().hex}
            return await client.post("/v1/track", json=event, auth=(key, ""))

        for _ in range(5):
            assert (await track(ingest_key)).status_code == 200
        _refused(await track(ingest_key), retry_after="1")
        r = await client.post("/v1/batch", json={"batch": []}, auth=(ingest_key, ""))
        _refused(r, retry_after="1")  # every tracking call counts against the same key
        assert (await track(admin_key)).status_code == 200
        clock.now += 0.25
        assert (await track(ingest_key)).status_code == 200


async def test_the_defaults_are_generous_and_zero_disables(settings: Settings, admin_key: str) -> None:
    defaults = Settings()
    assert (defaults.rate_limit_ingest_per_second, defaults.rate_limit_ingest_burst) == (2000, 4000)
    assert (defaults.rate_limit_api_per_second, defaults.rate_limit_api_burst) == (100, 200)
    async with app_with_limits(settings, Clock(), rate_limit_api_per_second=0, rate_limit_api_burst=1) as client:
        for _ in range(20):
            r = await client.get("/v1/contacts", headers={"Authorization": f"Bearer {admin_key}"})
            assert r.status_code == 200
