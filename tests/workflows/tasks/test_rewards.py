"""Rewards end to end on real Temporal: the long-lived progress consumer and reward dispatcher, the issuance saga
crediting the ledger, risk holds, manual claims inside and outside the window, and reconciliation through the
tasks' GrantSource."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from tests.store.tasks.conftest import active_task, contact_id, grants_of, program, tag, track
from workflows.schedules import ensure_long_lived
from workflows.tasks.progress import CONSUMER_ID, DISPATCHER_ID, ConsumerInput, DispatcherInput, plans

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
async def engine(temporal_client: Client, worker: None) -> AsyncIterator[None]:
    """The deployment's two long-lived task workflows, as a worker's start-up starts them; stopped afterwards so
    other modules drive issuance themselves."""
    await ensure_long_lived(temporal_client, plans(ConsumerInput(poll_seconds=0.2, window_seconds=10),
                                                   DispatcherInput(poll_seconds=0.2, window_seconds=10)))
    yield
    for workflow_id in (CONSUMER_ID, DISPATCHER_ID):
        await temporal_client.get_workflow_handle(workflow_id).terminate("test module done")


async def until(check: object, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out")
        await asyncio.sleep(0.1)


async def statuses(sessions: async_sessionmaker[AsyncSession], task_id: int) -> list[str]:
    return [g.status for g in await grants_of(sessions, task_id)]


async def balance(api: httpx.AsyncClient, program_id: int, contact: int) -> int:
    r = await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program_id})
    return int(r.json()["balance"]) if r.status_code == 200 else 0


async def test_daily_check_in_credits_five_points_a_day_exactly_once(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient, temporal_client: Client,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    check_in = f"check_in_{tag()}"
    task = await active_task(api, user_action=check_in, reward_count=5, threshold=1, program_id=points,
                             period={"kind": "daily", "zone": "Asia/Shanghai"})
    user = f"u-{tag()}"
    midnight = datetime(2026, 12, 4, tzinfo=SHANGHAI)
    await track(ingest, user, [(check_in, {}, midnight - timedelta(seconds=1)), (check_in, {}, midnight),
                               (check_in, {}, midnight + timedelta(hours=1))])

    async def issued() -> bool:
        return await statuses(sessions, task["id"]) == ["issued", "issued"]
    await until(issued)
    c = await contact_id(api, user)
    assert await balance(api, points, c) == 10
    grants = await grants_of(sessions, task["id"])
    batch = grants[0].batch
    handle = temporal_client.get_workflow_handle(batch)
    assert await handle.result() == "issued"
    described = await handle.describe()
    assert batch.startswith("reward-issuance:")
    assert described.typed_search_attributes is not None
    centre = (await api.get(f"/v1/contacts/{c}/tasks")).json()
    mine = [t for t in centre["tasks"] if t["task_id"] == task["id"]]
    assert mine and mine[0]["num"] == 1 and mine[0]["rewards"] == []


async def test_a_reward_the_risk_controls_hold_stays_pending_until_reviewed(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    r = await api.post("/v1/ledger/risk/rules", json={"program_id": points, "action": "credit", "dimension": "contact",
                                                      "window_seconds": 3600, "max_amount": 1, "verdict": "review"})
    assert r.status_code == 201, r.text
    order = f"order_{tag()}"
    task = await active_task(api, user_action=order, reward_count=20, program_id=points, period={"kind": "once"})
    user = f"u-{tag()}"
    await track(ingest, user, [(order, {"amount": 120}, datetime.now(UTC))])

    async def held() -> bool:
        return await statuses(sessions, task["id"]) == ["held"]
    await until(held)
    c = await contact_id(api, user)
    assert await balance(api, points, c) == 0
    reviews = (await api.get("/v1/ledger/reviews", params={"status": "pending", "limit": 500})).json()
    (review,) = [x for x in reviews if x["reference"].startswith(f"reward:{task['id']}:")]
    r = await api.post(f"/v1/ledger/reviews/{review['id']}/release", json={"note": "looks fine"})
    assert r.status_code == 200, r.text

    async def issued() -> bool:
        return await statuses(sessions, task["id"]) == ["issued"]
    await until(issued)
    assert await balance(api, points, c) == 20


async def test_a_manual_claim_inside_the_window_is_issued_and_a_late_one_is_refused_with_the_reason(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    comment = f"comment_{tag()}"
    task = await active_task(api, user_action=comment, filter="size(event.properties.text) >= 20", reward_count=10,
                             program_id=points, claim_mode="manual", claim_window_seconds=3600,
                             period={"kind": "daily"})
    early, late = f"u-{tag()}", f"u-{tag()}"
    now = datetime.now(UTC)
    for user in (early, late):
        await track(ingest, user, [(comment, {"text": "a thoughtful comment of some length"}, now)])

    async def claimable() -> bool:
        return await statuses(sessions, task["id"]) == ["claimable", "claimable"]
    await until(claimable)
    c_early, c_late = await contact_id(api, early), await contact_id(api, late)
    centre = (await api.get(f"/v1/contacts/{c_early}/tasks")).json()
    (mine,) = [t for t in centre["tasks"] if t["task_id"] == task["id"]]
    assert [g["status"] for g in mine["rewards"]] == ["claimable"] and mine["time_left_seconds"] > 0

    r = await api.post(f"/v1/tasks/{task['id']}/claim", json={"contact_id": c_early})
    assert r.status_code == 200, r.text
    assert [g["status"] for g in r.json()] == ["pending"]
    again = await api.post(f"/v1/tasks/{task['id']}/claim", json={"contact_id": c_early})
    assert again.status_code == 409 and "already claimed" in again.json()["detail"]

    async with sessions() as s, s.begin():  # the window of the other contact's reward closes
        await s.execute(text("UPDATE task_grants SET claim_deadline = now() - interval '1 second' "
                             "WHERE task_id = :t AND contact_id = :c"), {"t": task["id"], "c": c_late})
    r = await api.post(f"/v1/tasks/{task['id']}/claim", json={"contact_id": c_late})
    assert r.status_code == 409 and "claim window has closed" in r.json()["detail"], r.text
    assert r.headers["content-type"].startswith("application/problem+json")

    async def settled() -> bool:
        return sorted(await statuses(sessions, task["id"])) == ["issued", "lapsed"]
    await until(settled)
    assert await balance(api, points, c_early) == 10 and await balance(api, points, c_late) == 0
    assert (await api.get(f"/v1/tasks/{task['id']}/grants", params={"status": "lapsed"})).json()[0]["contact_id"] \
        == c_late


async def test_reconciliation_credits_a_grant_whose_posting_was_deleted_by_hand(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    like = f"like_{tag()}"
    task = await active_task(api, user_action=like, num=3, reward_count=1, threshold=20, program_id=points,
                             period={"kind": "daily", "zone": "Asia/Shanghai"})
    user = f"u-{tag()}"
    await track(ingest, user, [(like, {}, datetime.now(UTC))] * 3)

    async def issued() -> bool:
        return await statuses(sessions, task["id"]) == ["issued"]
    await until(issued)
    (grant,) = await grants_of(sessions, task["id"])
    async with sessions() as s, s.begin():  # someone deletes the posting (and its entries) by hand
        pid = await s.scalar(text("SELECT id FROM ledger_postings WHERE program_id = :p AND reference = :r"),
                             {"p": points, "r": grant.reference})
        await s.execute(text("DELETE FROM ledger_entries WHERE posting_id = :i"), {"i": pid})
        await s.execute(text("DELETE FROM ledger_postings WHERE id = :i"), {"i": pid})
    started = await api.post("/v1/ledger/reconciliations", json={"program_ids": [points]})
    assert started.status_code == 202, started.text
    workflow_id = started.json()["workflow_id"]

    async def done() -> bool:
        return (await api.get(f"/v1/ledger/reconciliations/{workflow_id}")).json()["status"] != "RUNNING"
    await until(done, timeout=60)
    findings = (await api.get("/v1/ledger/findings", params={"program_id": points})).json()["findings"]
    assert any(f["subject"] == f"grant:{grant.reference}" for f in findings), findings
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM ledger_postings WHERE program_id = :p AND reference = :r"),
                              {"p": points, "r": grant.reference}) == 1
