"""CampaignWorkflow: pause/resume through the API, Temporal visibility, and deterministic replay."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Replayer

from workflows.campaigns import CampaignWorkflow


async def _audience(sessions: async_sessionmaker[AsyncSession], tag: str, n: int) -> list[int]:
    async with sessions() as s, s.begin():
        return list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT :tag || i, :tag || i || '@example.com' "
            "FROM generate_series(1, :n) i RETURNING id"), {"tag": tag, "n": n})).all())


async def _wait_status(api: httpx.AsyncClient, cid: int, status: str) -> dict:
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)


async def test_paused_campaign_sends_nothing_more_until_resumed(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None,
) -> None:
    ids = await _audience(sessions, "pause-", 400)  # 8 batches of 50 in the test settings
    cid = (await api.post("/v1/campaigns", json={"name": "Pausable", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    paused = await api.post(f"/v1/campaigns/{cid}/pause")
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    handle = temporal_client.get_workflow_handle(f"campaign:{cid}:run:1")
    for _ in range(100):
        if (await handle.query(CampaignWorkflow.progress)).paused:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.5)  # let any in-flight batch finish
    sent_while_paused = (await api.get(f"/v1/campaigns/{cid}")).json()["run"]["sent"]
    await asyncio.sleep(1.0)
    assert (await api.get(f"/v1/campaigns/{cid}")).json()["run"]["sent"] == sent_while_paused < 400

    assert (await api.post(f"/v1/campaigns/{cid}/pause")).status_code == 409  # already paused
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 409  # no second run while paused
    assert (await api.post(f"/v1/campaigns/{cid}/resume")).json()["status"] == "running"
    done = await _wait_status(api, cid, "completed")
    assert (done["run"]["sent"], done["run"]["queued"]) == (400, 0)


async def test_run_is_findable_by_campaign_and_replays_deterministically(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None,
) -> None:
    ids = await _audience(sessions, "replay-", 120)
    cid = (await api.post("/v1/campaigns", json={"name": "Replay", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    await _wait_status(api, cid, "completed")

    found = []
    for _ in range(100):  # visibility is eventually consistent
        found = [w async for w in temporal_client.list_workflows(f'CampaignId = "{cid}" AND NudgeKind = "campaign"')]
        if found:
            break
        await asyncio.sleep(0.1)
    assert [w.id for w in found] == [f"campaign:{cid}:run:1"]

    history = await temporal_client.get_workflow_handle(f"campaign:{cid}:run:1").fetch_history()
    result = await Replayer(workflows=[CampaignWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None
