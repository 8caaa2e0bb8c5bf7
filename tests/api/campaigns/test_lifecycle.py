"""Lifecycle and approval through the real API: the policy, the four-eyes rule, the audit trail, cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.keys import Scope
from store import keys
from store.db import transaction


async def _client(api_url: str, sessions: async_sessionmaker[AsyncSession], name: str,
                  scope: Scope) -> httpx.AsyncClient:
    async with transaction(sessions) as s:
        token = (await keys.create_key(s, name, [scope])).token
    return httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture
async def approver(api_url: str, sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[httpx.AsyncClient]:
    async with await _client(api_url, sessions, "approver ann", Scope.APPROVE) as client:
        yield client


async def _contact(api: httpx.AsyncClient, tag: str) -> int:
    r = await api.post("/v1/contacts", json={"user_id": tag, "email": f"{tag}@example.com"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _wait(api: httpx.AsyncClient, cid: int, status: str) -> dict:
    body: dict = {}
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)


async def test_incentive_needs_another_keys_approval_and_every_move_is_audited(
    api: httpx.AsyncClient, approver: httpx.AsyncClient, read_key: str, api_url: str, worker: None,
) -> None:
    contact = await _contact(api, "approval-1")
    r = await api.post("/v1/campaigns", json={"name": "Double points", "subject": "s", "body": "b",
                                              "incentive": {"points": 100}, "audience": {"contact_ids": [contact]}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]

    refused = await api.post(f"/v1/campaigns/{cid}/launch")
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert "needs approval" in refused.json()["detail"] and "incentive" in refused.json()["detail"]

    assert (await api.post(f"/v1/campaigns/{cid}/submit", json={"note": "please"})).json()["status"] == \
        "pending_approval"
    own = await api.post(f"/v1/campaigns/{cid}/approve")  # admin implies approve, but it created the campaign
    assert own.status_code == 409 and "created it" in own.json()["detail"]
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_key}"}) as reader:
        assert (await reader.post(f"/v1/campaigns/{cid}/approve")).status_code == 403
    assert (await approver.post(f"/v1/campaigns/{cid}/launch")).status_code == 403  # approving is not launching
    approved = await approver.post(f"/v1/campaigns/{cid}/approve", json={"note": "ok"})
    assert approved.status_code == 200 and approved.json()["status"] == "approved"

    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    await _wait(api, cid, "completed")
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [(m["from_status"], m["to_status"]) for m in moves] == [
        ("draft", "pending_approval"), ("pending_approval", "approved"), ("approved", "running"),
        ("running", "completed")]
    assert moves[0]["key_name"] == "test admin" and moves[0]["note"] == "please"
    assert moves[1]["key_name"] == "approver ann" and moves[1]["key_id"] != moves[0]["key_id"]
    assert moves[3]["key_id"] is None and moves[3]["key_name"] == "run 1"


async def test_rejected_submission_returns_to_draft_and_cannot_launch(
    api: httpx.AsyncClient, approver: httpx.AsyncClient,
) -> None:
    contact = await _contact(api, "approval-2")
    cid = (await api.post("/v1/campaigns", json={"name": "Ask first", "subject": "s", "body": "b",
                                                 "approval_required": True,
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    assert (await approver.post(f"/v1/campaigns/{cid}/approve")).status_code == 409  # not submitted yet
    await api.post(f"/v1/campaigns/{cid}/submit")
    rejected = await approver.post(f"/v1/campaigns/{cid}/reject", json={"note": "typo in the subject"})
    assert rejected.json()["status"] == "draft"
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 409 and "asks for approval" in r.json()["detail"]
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert moves[-1]["to_status"] == "draft" and moves[-1]["note"] == "typo in the subject"


async def test_cancelled_draft_is_final(api: httpx.AsyncClient) -> None:
    contact = await _contact(api, "approval-3")
    cid = (await api.post("/v1/campaigns", json={"name": "Never", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/cancel")).json()["status"] == "cancelled"
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 409 and "final" in r.json()["detail"]
    assert (await api.get("/v1/campaigns/987654321/transitions")).status_code == 404


async def test_launch_at_a_later_time_schedules_and_cancel_stops_it(api: httpx.AsyncClient, worker: None) -> None:
    contact = await _contact(api, "approval-4")
    cid = (await api.post("/v1/campaigns", json={"name": "Later", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    naive = await api.post(f"/v1/campaigns/{cid}/launch", json={"at": "2030-01-01T09:00:00"})
    assert naive.status_code == 422 and "zone offset" in naive.text
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    r = await api.post(f"/v1/campaigns/{cid}/launch", json={"at": later})
    assert r.status_code == 202 and r.json()["status"] == "scheduled"
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 409  # already scheduled
    assert (await api.post(f"/v1/campaigns/{cid}/cancel")).json()["status"] == "cancelled"
    body = await _wait_run(api, cid, "cancelled")
    assert (body["run"]["sent"], body["run"]["total"]) == (0, 0)


async def _wait_run(api: httpx.AsyncClient, cid: int, status: str) -> dict:
    body: dict = {}
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["run"] and body["run"]["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)
