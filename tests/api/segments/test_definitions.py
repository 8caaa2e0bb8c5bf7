"""Segments through the real HTTP API: validation, preview, manual lists, rule membership kept fresh."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.segments.transitions import Transition, read_transitions


async def _transitions(sessions: async_sessionmaker[AsyncSession], segment_id: int,
                       at_least: int) -> list[Transition]:
    """The segment's transitions as a consumer sees them: rows committed before every running transaction
    began, so a busy background refresh can delay them a little."""
    for _ in range(150):
        async with sessions() as s:
            found = [t for t in await read_transitions(s, limit=1_000_000) if t.segment_id == segment_id]
        if len(found) >= at_least:
            return found
        await asyncio.sleep(0.1)
    return found


def _tag() -> str:
    return f"api-seg-{uuid.uuid4().hex[:8]}"


async def _contacts(api: httpx.AsyncClient, tag: str, plans: list[str]) -> list[int]:
    ids = []
    for i, plan in enumerate(plans):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com",
                                                  "traits": {"tag": tag, "plan": plan}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def test_invalid_rules_are_rejected_with_422_naming_the_problem(api: httpx.AsyncClient) -> None:
    cases = [
        ({"field": "traits.plan", "op": "like", "value": "pro"}, 'unknown operator "like"'),
        ({"field": "plan", "op": "eq", "value": "pro"}, "unknown field 'plan'"),
        ({"field": "created_at", "op": "before", "value": 3}, "ISO-8601"),
        ({"field": "email", "op": "eq", "value": 3}, "field 'email' is a string"),
        ({"event": "order_paid", "where_cel": "event.properties.amount >> 1"}, "CEL syntax error"),
        ({"segment": 987654321}, "segment(s) 987654321 do not exist"),
    ]
    before = (await api.get("/v1/segments", params={"limit": 500})).json()["items"]
    for rule, message in cases:
        r = await api.post("/v1/segments", json={"name": "bad", "kind": "rule", "rule": rule})
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert message in r.json()["detail"], r.json()["detail"]
        r = await api.post("/v1/segments/preview", json={"rule": rule})
        assert r.status_code == 422 and message in r.json()["detail"]
    after = (await api.get("/v1/segments", params={"limit": 500})).json()["items"]
    assert len(after) == len(before), "a rejected rule writes nothing"


async def test_preview_counts_and_samples_without_saving(api: httpx.AsyncClient) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, ["pro", "pro", "free"])
    rule = {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                    {"field": "traits.plan", "op": "eq", "value": "pro"}]}
    before = len((await api.get("/v1/segments", params={"limit": 500})).json()["items"])
    r = await api.post("/v1/segments/preview", json={"rule": rule, "sample": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 2 and body["backend"] == "postgres"
    assert [c["id"] for c in body["sample"]] == [ids[0]]
    assert len((await api.get("/v1/segments", params={"limit": 500})).json()["items"]) == before


async def test_manual_segment_add_remove_csv_and_keyset_members(api: httpx.AsyncClient,
                                                                 sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, ["a"] * 5)
    r = await api.post("/v1/segments", json={"name": f"{tag} list", "kind": "manual", "contact_ids": ids[:2]})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    assert r.json()["member_count"] == 2

    r = await api.post(f"/v1/segments/{sid}/members", json={"contact_ids": [ids[1], ids[2]]})
    assert r.json()["changed"] == 1, "re-adding a member changes nothing"
    csv = f"email,name\n{tag}-3@example.com,x\n{tag.upper()}-4@EXAMPLE.COM,y\nnobody@example.com,z\n"
    r = await api.post(f"/v1/segments/{sid}/members/csv", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == 2 and r.json()["unknown"] == ["nobody@example.com"]
    r = await api.post(f"/v1/segments/{sid}/members/remove", json={"contact_ids": [ids[0]]})
    assert r.json()["changed"] == 1
    assert (await api.get(f"/v1/segments/{sid}/count")).json()["count"] == 4

    seen, after = [], 0
    while True:
        page = (await api.get(f"/v1/segments/{sid}/members", params={"after": after, "limit": 3})).json()
        seen += [m["contact_id"] for m in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == ids[1:]

    transitions = await _transitions(sessions, sid, 5)
    assert [(t.contact_id, t.kind) for t in transitions if t.contact_id == ids[0]] == [
        (ids[0], "segment_entered"), (ids[0], "segment_exited")]


async def test_rule_segment_materialises_members_and_refuses_manual_adds(api: httpx.AsyncClient) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, ["pro", "free"])
    rule = {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                    {"field": "traits.plan", "op": "eq", "value": "pro"}]}
    r = await api.post("/v1/segments", json={"name": f"{tag} pros", "kind": "rule", "rule": rule})
    assert r.status_code == 201, r.text
    seg = r.json()
    assert seg["member_count"] == 1 and not seg["time_based"]
    assert (await api.get(f"/v1/segments/{seg['id']}/members")).json()["items"][0]["contact_id"] == ids[0]
    r = await api.post(f"/v1/segments/{seg['id']}/members", json={"contact_ids": [ids[1]]})
    assert r.status_code == 409


async def test_a_new_event_brings_the_touched_contact_into_the_segment(
    api: httpx.AsyncClient, api_url: str, ingest_key: str, segment_consumer: Any,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, ["pro", "pro"])
    rule = {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                    {"event": "order_paid", "within_last": "30d",
                     "where": {"field": "properties.amount", "op": "gt", "value": 100}}]}
    seg = (await api.post("/v1/segments", json={"name": f"{tag} buyers", "kind": "rule", "rule": rule})).json()
    assert seg["member_count"] == 0 and seg["time_based"]

    async with httpx.AsyncClient(base_url=api_url, auth=(ingest_key, "")) as ingest:
        r = await ingest.post("/v1/track", json={"userId": f"{tag}-1", "event": "order_paid",
                                                 "properties": {"amount": 150}, "messageId": f"{tag}-m1"})
        assert r.status_code == 200, r.text

    # The deployment's long-lived consumer picks the event up within its poll interval.
    assert await segment_consumer.caught_up() < 10
    members = (await api.get(f"/v1/segments/{seg['id']}/members")).json()["items"]
    assert [m["contact_id"] for m in members] == [ids[1]]
    entered_at = datetime.fromisoformat(members[0]["entered_at"])
    assert (datetime.now(UTC) - entered_at).total_seconds() < 120
    transitions = await _transitions(sessions, seg["id"], 1)
    assert [(t.contact_id, t.kind) for t in transitions] == [(ids[1], "segment_entered")]
