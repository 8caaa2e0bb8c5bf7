"""RedemptionWorkflow end to end (real API, Temporal and Postgres): success, and failure at every step
leaves no points and no stock lost."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from store.db import transaction
from store.ledger.redemptions import open_redemption
from workflows.ledger.redemptions import TASK_QUEUE, RedemptionInput, RedemptionWorkflow, workflow_id


async def _setup(api: httpx.AsyncClient, points: int, stock: int) -> tuple[int, int, int]:
    program = (await api.post("/v1/ledger/programs", json={"name": f"r-{uuid.uuid4().hex[:8]}"})).json()["id"]
    contact = (await api.post("/v1/contacts", json={"user_id": f"redeem-{uuid.uuid4().hex[:8]}"})).json()["id"]
    if points:
        r = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"seed:{contact}",
                                                        "kind": "credit", "contact_id": contact, "amount": points})
        assert r.status_code == 201, r.text
    r = await api.post("/v1/ledger/rewards", json={"program_id": program, "name": "Mug", "cost": 100, "stock": stock})
    assert r.status_code == 201, r.text
    return program, contact, r.json()["id"]


async def _settled(api: httpx.AsyncClient, order: str) -> dict:
    for _ in range(300):
        body = (await api.get(f"/v1/redemptions/{order}")).json()
        if body["status"] != "pending":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order} did not settle: {body}")


async def _state(api: httpx.AsyncClient, program: int, contact: int, reward: int) -> tuple[int, int, int]:
    account = (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()
    stock = (await api.get(f"/v1/ledger/rewards/{reward}")).json()["stock"]
    return account["balance"], account["held"], stock


async def test_a_redemption_spends_the_points_and_the_stock_once(api: httpx.AsyncClient, worker: None) -> None:
    program, contact, reward = await _setup(api, points=500, stock=3)
    order = f"o-{uuid.uuid4().hex[:8]}"
    body = {"order_id": order, "contact_id": contact, "reward_id": reward, "quantity": 2}
    first = await api.post("/v1/redemptions", json=body)
    assert first.status_code == 202, first.text
    assert first.json()["workflow_id"] == f"redeem:{order}"
    done = await _settled(api, order)
    assert (done["status"], done["points"]) == ("completed", 200)
    again = await api.post("/v1/redemptions", json=body)
    assert again.status_code == 200 and again.json()["status"] == "completed"
    assert (await api.post("/v1/redemptions", json=body | {"quantity": 1})).status_code == 409
    assert await _state(api, program, contact, reward) == (300, 0, 1)


@pytest.mark.parametrize(("points", "stock", "failure"), [(50, 3, "needs 100 points"), (500, 0, "is out of stock")])
async def test_a_refused_step_compensates_and_loses_nothing(api: httpx.AsyncClient, worker: None, points: int,
                                                            stock: int, failure: str) -> None:
    program, contact, reward = await _setup(api, points=points, stock=stock)
    order = f"o-{uuid.uuid4().hex[:8]}"
    r = await api.post("/v1/redemptions", json={"order_id": order, "contact_id": contact, "reward_id": reward})
    assert r.status_code == 202, r.text
    done = await _settled(api, order)
    assert done["status"] == "failed" and failure.lower() in done["failure"].lower()
    assert await _state(api, program, contact, reward) == (points, 0, stock)


@pytest.mark.parametrize("step", ["hold_points", "reserve_stock", "fulfil", "commit_hold"])
async def test_a_failure_at_any_step_voids_the_hold_and_releases_the_stock(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
        step: str) -> None:
    program, contact, reward = await _setup(api, points=500, stock=3)
    order = f"o-{uuid.uuid4().hex[:8]}"
    values = {"order_id": order, "program_id": program, "contact_id": contact, "reward_id": reward, "quantity": 1,
              "points": 100}
    async with transaction(sessions) as s:
        await open_redemption(s, values)
    status = await temporal_client.execute_workflow(
        RedemptionWorkflow.run, RedemptionInput(**values, fail_at=[step]), id=workflow_id(order), task_queue=TASK_QUEUE)
    assert status == "failed"
    assert (await _settled(api, order))["failure"].startswith("injected failure")
    assert await _state(api, program, contact, reward) == (500, 0, 3)


async def test_a_cancelled_redemption_is_compensated(api: httpx.AsyncClient, worker: None, temporal_client: Client,
                                                     sessions: async_sessionmaker[AsyncSession]) -> None:
    program, contact, reward = await _setup(api, points=500, stock=3)
    order = f"o-{uuid.uuid4().hex[:8]}"
    values = {"order_id": order, "program_id": program, "contact_id": contact, "reward_id": reward, "quantity": 1,
              "points": 100}
    async with transaction(sessions) as s:
        await open_redemption(s, values)
    # The fulfil step keeps failing (retryable), so the order waits there until it is cancelled.
    handle = await temporal_client.start_workflow(
        RedemptionWorkflow.run, RedemptionInput(**values, fail_at=["fulfil:retry"]), id=workflow_id(order),
        task_queue=TASK_QUEUE)
    for _ in range(100):
        if (await _state(api, program, contact, reward))[1] == 100 and \
                (await _state(api, program, contact, reward))[2] == 2:
            break
        await asyncio.sleep(0.1)
    await handle.cancel()
    assert (await _settled(api, order))["status"] == "cancelled"
    assert await _state(api, program, contact, reward) == (500, 0, 3)
