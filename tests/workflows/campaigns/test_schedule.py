"""A campaign scheduled for a later time: it waits (a durable timer, skipped by the time-skipping test server), moves
scheduled → running when the time comes, and a cancel before then closes the run without sending."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.campaigns import CampaignActivities
from api.runtime import Runtime
from store.campaigns import lifecycle, runs
from store.campaigns.lifecycle import Actor
from store.db import transaction
from tests.skipping import time_skipping
from workflows.campaigns import CampaignRunInput, CampaignWorkflow

QUEUE = "campaigns-schedule-test"


@pytest.fixture
async def skipping(runtime: Runtime) -> AsyncIterator[WorkflowEnvironment]:
    acts = CampaignActivities(runtime.sessions, runtime.email, runtime.outcomes)
    async with time_skipping() as env, Worker(env.client, task_queue=QUEUE, workflows=[CampaignWorkflow],
                      activities=[acts.snapshot_audience, acts.begin_run, acts.partition, acts.send_batch,
                                  acts.finish_run]):
        yield env


async def _scheduled(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tag: str,
                     at: datetime) -> tuple[int, int, str]:
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT :t || i, :t || i || '@example.com' "
            "FROM generate_series(1, 3) i RETURNING id"), {"t": tag})).all())
    cid = (await api.post("/v1/campaigns", json={"name": tag, "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, cid, at=at)
    assert (await api.get(f"/v1/campaigns/{cid}")).json()["status"] == "scheduled"
    return cid, run.id, run.workflow_id


async def test_scheduled_campaign_fires_at_its_time(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    at = datetime.now(UTC) + timedelta(days=3)
    cid, run_id, workflow_id = await _scheduled(api, sessions, "sched-", at)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run_id, batch_size=50, start_at=at.timestamp()),
        id=workflow_id, task_queue=QUEUE)
    progress = await handle.result()  # the server skips the three days
    assert (progress.sent, progress.total) == (3, 3)
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
              async for e in handle.fetch_history_events() if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == 1 and timedelta(days=2, hours=23) < timers[0] <= timedelta(days=3)
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [(m["from_status"], m["to_status"], m["key_name"]) for m in moves][1:] == [
        ("scheduled", "running", "run 1"), ("running", "completed", "run 1")]
    assert moves[0]["to_status"] == "scheduled" and moves[0]["note"].startswith("scheduled for ")


async def test_cancelling_a_scheduled_campaign_sends_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    at = datetime.now(UTC) + timedelta(days=1)
    cid, run_id, workflow_id = await _scheduled(api, sessions, "sched-cancel-", at)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run_id, start_at=at.timestamp()),
        id=workflow_id, task_queue=QUEUE)
    async with transaction(sessions) as s:
        await lifecycle.cancel(s, cid, Actor.system("test"), "not now")
    await handle.signal(CampaignWorkflow.cancel)
    progress = await handle.result()
    assert progress.cancelled and (progress.sent, progress.total) == (0, 0)
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "cancelled" and body["run"]["status"] == "cancelled"
