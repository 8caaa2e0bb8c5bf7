"""`POST /v1/pricing/quote` is answered from ASGI (api/promotions/pricing.py:QuoteFastPath) when the key is a Bearer
token and the body valid, and by the FastAPI route otherwise: both give the same answers — the quote, the 401, 403
and 422 naming the field, the input-hygiene refusals — a revoked key stops working within the key cache's time to
live, and a quote while the database is away is a 503 like any request's."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from api.deps import KNOWN_KEYS
from api.runtime import create_api_key
from core.settings import Settings
from domain.keys import Scope
from store import keys
from store.db import transaction
from tests.api.test_outages import Throwaway, serve, throwaway  # noqa: F401  (the fixture)


def _cart(sku: str) -> dict[str, object]:
    return {"lines": [{"sku": sku, "category": "c", "unit_price": 1000, "quantity": 2}], "shipping": 100}


async def test_fast_and_routed_quotes_answer_alike(api: httpx.AsyncClient, anon_api: httpx.AsyncClient,
                                                    read_key: str, ingest_key: str) -> None:
    sku = f"fast-{uuid.uuid4().hex[:8]}"
    r = await api.post("/v1/promotions", json={"name": "fast", "kind": "amount_off", "amount": 300,
                                               "scope": {"skus": [sku]}})
    assert r.status_code == 201, r.text
    bearer = await anon_api.post("/v1/pricing/quote", json=_cart(sku), headers={"Authorization": f"Bearer {read_key}"})
    basic = await anon_api.post("/v1/pricing/quote", json=_cart(sku), auth=(read_key, ""))  # the route answers
    assert bearer.status_code == basic.status_code == 200, (bearer.text, basic.text)
    assert bearer.headers["content-type"] == "application/json"
    assert bearer.json() == basic.json() and bearer.json()["discount"] == 300 and bearer.json()["total"] == 1800

    missing = await anon_api.post("/v1/pricing/quote", json=_cart(sku))
    assert missing.status_code == 401 and missing.headers["content-type"] == "application/problem+json"
    unknown = await anon_api.post("/v1/pricing/quote", json=_cart(sku),
                                  headers={"Authorization": "Bearer nk_abcdefgh_" + "x" * 32})
    assert unknown.status_code == 401 and "unknown or revoked" in unknown.json()["detail"]
    ingest_only = await anon_api.post("/v1/pricing/quote", json=_cart(sku),
                                      headers={"Authorization": f"Bearer {ingest_key}"})
    assert ingest_only.status_code == 403 and "`read` scope" in ingest_only.json()["detail"]
    invalid = await api.post("/v1/pricing/quote", json={"lines": [{"sku": sku, "unit_price": -1, "quantity": 1}]})
    assert invalid.status_code == 422 and "lines.0.unit_price" in invalid.text
    nul = await api.post("/v1/pricing/quote", json={"lines": [{"sku": "a\x00", "unit_price": 1, "quantity": 1}]})
    assert nul.status_code == 400 and nul.json()["errors"][0]["field"] == "lines.0.sku", nul.text
    large = await api.post("/v1/pricing/quote", content=b'{"lines": "' + b"x" * (2 * 1024 * 1024) + b'"}',
                           headers={"content-type": "application/json"})
    assert large.status_code == 413
    nobody = await api.post("/v1/pricing/quote", json={**_cart(sku), "contact_id": 2**62})
    assert nobody.status_code == 404 and "contact_id" in nobody.json()["detail"]


async def test_a_revoked_key_stops_working_within_the_cache_ttl(
        anon_api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as s:
        token = (await keys.create_key(s, "revoked soon", [Scope.READ])).token
    headers = {"Authorization": f"Bearer {token}"}
    cart = _cart(f"revoked-{uuid.uuid4().hex[:8]}")
    assert (await anon_api.post("/v1/pricing/quote", json=cart, headers=headers)).status_code == 200
    async with transaction(sessions) as s:
        assert await keys.revoke_key(s, token.split("_")[1])
    revoked = time.monotonic()
    while (await anon_api.post("/v1/pricing/quote", json=cart, headers=headers)).status_code == 200:
        # The bound is the cache's ttl (1 s); generous here so a loaded test machine does not flake.
        assert time.monotonic() - revoked < KNOWN_KEYS.ttl + 10, "the revoked key kept working"
        await asyncio.sleep(0.05)
    assert (await anon_api.post("/v1/pricing/quote", json=cart, headers=headers)).status_code == 401


async def test_a_quote_while_the_database_is_away_is_a_503_and_quotes_resume_after(
        throwaway: Throwaway, settings: Settings) -> None:  # noqa: F811  (the imported fixture)
    """The quotes' own connections meet a restart like the sessions do: 503 with Retry-After while the database is
    away (the dropped connections are discarded), quotes again once it is back."""
    key = await create_api_key(throwaway.url, "quote outage", [Scope.READ])
    cart = _cart(f"outage-{uuid.uuid4().hex[:8]}")
    async with serve(settings.model_copy(update={"database_url": throwaway.url})) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        assert (await client.post("/v1/pricing/quote", json=cart)).status_code == 200
        await throwaway.take_down()
        away = await client.post("/v1/pricing/quote", json=cart)
        assert away.status_code == 503 and away.headers["retry-after"] == "1", away.text
        await throwaway.bring_up()
        started = time.monotonic()
        while (back := await client.post("/v1/pricing/quote", json=cart)).status_code == 503:
            assert time.monotonic() - started < 30, back.text  # a hang guard, not a timing assertion
            await asyncio.sleep(0.1)
        assert back.status_code == 200, back.text
