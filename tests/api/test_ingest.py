"""The Segment-compatible tracking API through real HTTP and Postgres."""

from __future__ import annotations

import gzip
import uuid

import httpx
import orjson
import pytest


def _tag() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def ingest(api_url: str, ingest_key: str) -> httpx.AsyncClient:
    async with httpx.AsyncClient(base_url=api_url, auth=(ingest_key, ""), timeout=30) as client:
        yield client


async def _contact_of(api: httpx.AsyncClient, kind: str, value: str) -> dict:
    r = await api.get("/v1/contacts", params={"identity": f"{kind}:{value}"})
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert len(items) == 1, items
    return items[0]


async def _events(api: httpx.AsyncClient, contact_id: int) -> list[dict]:
    r = await api.get(f"/v1/contacts/{contact_id}/events", params={"limit": 500})
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_track_call_is_stored_for_the_user(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    user = f"u-{_tag()}"
    r = await ingest.post("/v1/track", json={"userId": user, "event": "order_paid", "properties": {"amount": 120}})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "received": 1, "inserted": 1}
    contact = await _contact_of(api, "user_id", user)
    assert contact["last_seen_at"] is not None
    [event] = await _events(api, contact["id"])
    assert (event["type"], event["event"], event["properties"]) == ("track", "order_paid", {"amount": 120})


async def test_replayed_batch_creates_no_duplicates(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    anon = f"a-{_tag()}"
    batch = {"batch": [{"type": "track", "anonymousId": anon, "event": "app_open", "messageId": f"{anon}-{i}"}
                       for i in range(20)]}
    first = await ingest.post("/v1/batch", json=batch)
    again = await ingest.post("/v1/batch", json=batch)
    assert first.json()["inserted"] == 20
    assert again.status_code == 200 and again.json()["inserted"] == 0
    contact = await _contact_of(api, "anonymous_id", anon)
    assert len(await _events(api, contact["id"])) == 20


async def test_gzip_batch_is_accepted(ingest: httpx.AsyncClient) -> None:
    body = gzip.compress(orjson.dumps({"batch": [{"type": "page", "anonymousId": _tag(), "name": "Home"}]}))
    r = await ingest.post("/v1/batch", content=body, headers={"Content-Encoding": "gzip",
                                                              "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["inserted"] == 1
