"""The reward-issuance saga under failure, on real Temporal: a failed ledger post compensates (budget released),
a failure after posting reverses the postings, a cancellation compensates, and a worker that died after posting
grants each reward exactly once when the batch runs again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowFailureError

from store.db import transaction
from store.tasks import grants
from tests.store.tasks.conftest import active_task, contact_id, drain, grants_of, program, tag, track
from workflows.schedules import kind
from workflows.tasks.issuance import TASK_QUEUE, IssuanceInput, RewardIssuanceWorkflow


async def _pending_batch(api: httpx.AsyncClient, ingest: httpx.AsyncClient,
                         sessions: async_sessionmaker[AsyncSession], users: int = 2,
                         budget: int | None = 100) -> tuple[dict, int, str, list[int]]:
    points = await program(api)
    act = f"act_{tag()}"
    task = await active_task(api, user_action=act, reward_count=7, budget=budget, program_id=points,
                             period={"kind": "once"})
    names = [f"u-{tag()}" for _ in range(users)]
    for user in names:
        await track(ingest, user, [(act, {}, datetime.now(UTC))])

    async def earned() -> bool:
        return len(await grants_of(sessions, task["id"])) == users
    await drain(sessions, until=earned)
    async with transaction(sessions) as s:
        (batch,) = await grants.claim_batches(s, batch_size=100, max_batches=1, now=datetime.now(UTC),
                                              task_id=task["id"])
    return task, points, batch.workflow_id, [await contact_id(api, u) for u in names]


async def _run(client: Client, batch: str, fail_at: list[str]) -> str:
    return await client.execute_workflow(
        RewardIssuanceWorkflow.run, IssuanceInput(batch, fail_at=fail_at), id=batch, task_queue=TASK_QUEUE,
        search_attributes=kind("reward-issuance"), static_summary="test batch")


async def _balance(api: httpx.AsyncClient, program_id: int, contact: int) -> int:
    r = await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program_id})
    return int(r.json()["balance"]) if r.status_code == 200 else 0


async def test_a_failed_ledger_post_releases_the_budget(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, points, batch, contacts = await _pending_batch(api, ingest, sessions)
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 14
    assert await _run(temporal_client, batch, ["post_rewards"]) == "compensated"
    found = await grants_of(sessions, task["id"])
    assert {g.status for g in found} == {"failed"} and "injected failure" in found[0].failure
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 0
    assert [await _balance(api, points, c) for c in contacts] == [0, 0]


async def test_a_failure_after_posting_reverses_the_postings(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, points, batch, contacts = await _pending_batch(api, ingest, sessions)
    assert await _run(temporal_client, batch, ["issue_benefits"]) == "compensated"
    assert [await _balance(api, points, c) for c in contacts] == [0, 0]
    async with sessions() as s:
        kinds = list(await s.scalars(text("SELECT kind FROM ledger_postings WHERE program_id = :p ORDER BY id"),
                                     {"p": points}))
    assert kinds == ["credit", "credit", "adjust", "adjust"]
    assert {g.status for g in await grants_of(sessions, task["id"])} == {"failed"}
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 0


async def test_a_cancelled_issuance_compensates(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, _, batch, _ = await _pending_batch(api, ingest, sessions, users=1)
    handle = await temporal_client.start_workflow(
        RewardIssuanceWorkflow.run, IssuanceInput(batch, fail_at=["post_rewards:retry"]), id=batch,
        task_queue=TASK_QUEUE, search_attributes=kind("reward-issuance"), static_summary="test batch")
    await handle.cancel()
    with pytest.raises(WorkflowFailureError):
        await handle.result()
    assert [g.status for g in await grants_of(sessions, task["id"])] == ["failed"]


async def test_a_worker_killed_after_posting_grants_each_reward_exactly_once(
        worker: None, temporal_client: Client, api: httpx.AsyncClient, ingest: httpx.AsyncClient,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    task, points, batch, contacts = await _pending_batch(api, ingest, sessions)
    # A worker ran the first steps' activities and died before Temporal heard back: their effects committed.
    async with transaction(sessions) as s:
        await grants.begin(s, batch, datetime.now(UTC))
        await grants.post_rewards(s, batch, now=datetime.now(UTC))
    assert await _run(temporal_client, batch, []) == "issued"
    assert [await _balance(api, points, c) for c in contacts] == [7, 7]
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM ledger_postings WHERE program_id = :p"), {"p": points}) == 2
    # The dispatcher finding the batch again starts nothing new: the workflow id comes from the grants.
    again = await temporal_client.start_workflow(
        RewardIssuanceWorkflow.run, IssuanceInput(batch), id=f"{batch}-{uuid.uuid4().hex[:4]}", task_queue=TASK_QUEUE,
        search_attributes=kind("reward-issuance"), static_summary="test batch")
    assert await again.result() == "issued"  # a second run over an issued batch finds nothing to do
    assert [await _balance(api, points, c) for c in contacts] == [7, 7]
    assert {g.status for g in await grants_of(sessions, task["id"])} == {"issued"}
