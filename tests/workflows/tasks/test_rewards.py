"""Rewards end to end on real Temporal: the long-lived progress consumer and reward dispatcher, the issuance saga
crediting the ledger, risk holds, manual claims inside and outside the window, reconciliation through the tasks'
GrantSource, and reward notices (inbox toasts and popups, channel chains), exactly once per grant. One module: the
long-lived consumer and dispatcher start once for all of them (a dispatcher terminated between modules may leave a
claim behind for its restart to pick up 30 s later)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from activities.tasks.rewards import IssuanceStep, RewardActivities
from domain.tasks.lifecycle import TaskStatus
from store.db import transaction
from store.tasks.definitions import create_task, set_status
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

    async def told() -> bool:  # held, nothing to tell; released and credited: the dispatcher's poll tells it
        return [m["display"] for m in (await api.get(f"/v1/contacts/{c}/inbox")).json()["messages"]] == ["toast"]
    await until(told)


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


# ---- Reward notices: a toast in the in-app inbox when an automatic reward is credited, a popup while a manual
# one waits to be claimed, a task's own channel chain through the delivery service, each once per grant.

async def inbox(api: httpx.AsyncClient, contact: int) -> list[dict[str, Any]]:
    r = await api.get(f"/v1/contacts/{contact}/inbox")
    assert r.status_code == 200, r.text
    return list(r.json()["messages"])


async def keys(sessions: async_sessionmaker[AsyncSession], contact: int) -> list[str]:
    async with sessions() as s:
        return list((await s.execute(text("SELECT key FROM inbox_messages WHERE contact_id = :c ORDER BY id"),
                                     {"c": contact})).scalars())


async def test_a_credited_reward_shows_one_toast_in_the_inbox_even_when_the_step_runs_again(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    order = f"order_{tag()}"
    task = await active_task(api, user_action=order, filter="event.properties.amount >= 100", reward_count=20,
                             program_id=points, period={"kind": "daily"})
    user = f"u-{tag()}"
    await track(ingest, user, [(order, {"amount": 120}, datetime.now(UTC))])

    async def issued() -> bool:
        return [g.status for g in await grants_of(sessions, task["id"])] == ["issued"]
    await until(issued)
    (grant,) = await grants_of(sessions, task["id"])
    c = await contact_id(api, user)
    (toast,) = await inbox(api, c)
    assert toast["display"] == "toast" and toast["title"] == "You earned 20 points"
    assert toast["data"]["reference"] == grant.reference and toast["data"]["task_id"] == task["id"]
    assert await keys(sessions, c) == [f"notify:{grant.reference}"]

    assert grant.notified_at is not None
    # A worker that died after sending but before marking: the step runs again, and tells nobody twice.
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE task_grants SET notified_at = NULL WHERE id = :g"), {"g": grant.id})
    assert await RewardActivities(sessions).notify_rewarded(IssuanceStep(grant.batch)) == 1
    assert await keys(sessions, c) == [f"notify:{grant.reference}"]
    assert await RewardActivities(sessions).notify_rewarded(IssuanceStep(grant.batch)) == 0  # told: marked


async def test_a_claimable_reward_shows_one_popup_until_its_window_closes(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    comment = f"comment_{tag()}"
    task = await active_task(api, user_action=comment, reward_count=10, program_id=points, claim_mode="manual",
                             claim_window_seconds=3600, period={"kind": "daily"})
    user = f"u-{tag()}"
    await track(ingest, user, [(comment, {}, datetime.now(UTC))])

    async def told() -> bool:
        return [g.notified_at is not None for g in await grants_of(sessions, task["id"])] == [True]
    await until(told)
    (grant,) = await grants_of(sessions, task["id"])
    assert grant.status == "claimable"
    c = await contact_id(api, user)
    (popup,) = await inbox(api, c)
    assert popup["display"] == "popup" and popup["title"] == "10 points to claim"
    assert popup["data"]["claimable"] is True
    assert datetime.fromisoformat(popup["expires_at"]) == grant.claim_deadline
    await asyncio.sleep(0.5)  # the dispatcher polls again: nothing new
    assert await keys(sessions, c) == [f"notify:{grant.reference}"]

    r = await api.post(f"/v1/tasks/{task['id']}/claim", json={"contact_id": c})
    assert r.status_code == 200, r.text

    async def issued() -> bool:
        return [g.status for g in await grants_of(sessions, task["id"])] == ["issued"]
    await until(issued)
    # Claimed and credited: the popup said it all, the credit adds no toast under the same key.
    assert await keys(sessions, c) == [f"notify:{grant.reference}"]


async def test_a_task_naming_a_channel_chain_notifies_through_the_delivery_service(
        engine: None, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    share = f"share_{tag()}"
    async with transaction(sessions) as s:  # `notify` is a definition field (the API schema does not take it yet)
        created = await create_task(s, {"name": f"t-{tag()}", "user_action": share, "reward_count": 3,
                                        "program_id": points, "period": {"kind": "once"},
                                        "notify": ["push", "inbox"]})
        await set_status(s, created.id, TaskStatus.APPROVED, now=datetime.now(UTC))
        await set_status(s, created.id, TaskStatus.ACTIVE, now=datetime.now(UTC))
    user = f"u-{tag()}"
    await track(ingest, user, [(share, {}, datetime.now(UTC))])
    c_holder: list[int] = []

    async def delivered() -> bool:
        if not c_holder:
            if [g.status for g in await grants_of(sessions, created.id)] != ["issued"]:
                return False
            c_holder.append(await contact_id(api, user))
        return len(await keys(sessions, c_holder[0])) == 1
    await until(delivered)
    (grant,) = await grants_of(sessions, created.id)
    c = c_holder[0]
    async with sessions() as s:
        plan = (await s.execute(text("SELECT chain, topic, transactional FROM delivery_plans "
                                     "WHERE contact_id = :c AND key = :k"),
                                {"c": c, "k": f"notify:{grant.reference}"})).one()
    assert list(plan.chain) == ["push", "inbox"] and plan.topic == "rewards" and plan.transactional
    # The contact has no push token: the chain fell back to the in-app inbox (the fallback's key).
    (toast,) = await inbox(api, c)
    assert toast["display"] == "toast" and await keys(sessions, c) == [f"notify:{grant.reference}#2"]
