"""A per-campaign send-rate cap: the workflow spaces batch starts by durable timers computed from the batch size and
the cap, so the run's workflow time (skipped by the time-skipping test server, never measured on the wall clock) is
at least recipients / cap, and no batch starts before the previous one's share of the cap has passed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.campaigns import CampaignActivities
from api.runtime import Runtime
from store.campaigns import runs
from store.db import transaction
from tests.skipping import time_skipping
from workflows.campaigns import CampaignProgress, CampaignRunInput, CampaignWorkflow, paced_batch_size

QUEUE = "campaigns-rate-cap-test"


@pytest.fixture
async def skipping(runtime: Runtime) -> AsyncIterator[WorkflowEnvironment]:
    acts = CampaignActivities(runtime.sessions, runtime.email, runtime.outcomes)
    async with time_skipping() as env, Worker(env.client, task_queue=QUEUE, workflows=[CampaignWorkflow],
                      activities=[acts.snapshot_audience, acts.begin_run, acts.partition, acts.send_batch,
                                  acts.finish_run]):
        yield env


async def _launched(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], tag: str, recipients: int,
                    cap: int | None) -> tuple[int, int, str]:
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT :t || i, :t || i || '@example.com' "
            "FROM generate_series(1, :n) i RETURNING id"), {"t": tag, "n": recipients})).all())
    r = await api.post("/v1/campaigns", json={"name": tag, "subject": "s", "body": "b", "max_per_second": cap,
                                              "audience": {"contact_ids": ids}})
    assert r.status_code == 201, r.text
    assert r.json()["max_per_second"] == cap
    async with transaction(sessions) as s:
        run = await runs.start_run(s, r.json()["id"])
    return r.json()["id"], run.id, run.workflow_id


async def _batch_starts(handle: WorkflowHandle) -> list[float]:
    return [e.event_time.ToDatetime().timestamp() async for e in handle.fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "send_batch"]


async def _elapsed(handle: WorkflowHandle) -> float:
    times = [e.event_time.ToDatetime().timestamp() async for e in handle.fetch_history_events()]
    return times[-1] - times[0]


async def test_a_capped_run_never_sends_faster_than_its_cap(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    cap, recipients = 2, 10
    batch = paced_batch_size(500, cap)
    assert batch == cap  # a batch holds at most one second's worth
    cid, run_id, workflow_id = await _launched(api, sessions, "rate-cap-", recipients, cap)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run_id, batch_size=batch, window=4,
                                               max_per_second=cap),
        id=workflow_id, task_queue=QUEUE)
    progress: CampaignProgress = await handle.result()
    assert (progress.sent, progress.total, progress.max_per_second) == (recipients, recipients, cap)
    starts = await _batch_starts(handle)
    assert len(starts) == recipients // batch
    # every batch of `batch` messages starts at least batch / cap seconds of workflow time after the one before
    assert all(b - a >= batch / cap - 0.01 for a, b in zip(starts, starts[1:], strict=False))
    # so the recipients sent by any batch start never exceed cap x elapsed + one batch
    assert all(batch * (i + 1) <= cap * (t - starts[0]) + batch for i, t in enumerate(starts))
    assert await _elapsed(handle) >= (recipients - batch) / cap


async def test_without_a_cap_batches_start_without_timers(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    cid, run_id, workflow_id = await _launched(api, sessions, "rate-free-", 6, None)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run_id, batch_size=2, window=4),
        id=workflow_id, task_queue=QUEUE)
    progress = await handle.result()
    assert (progress.sent, progress.max_per_second) == (6, None)
    assert not [e async for e in handle.fetch_history_events() if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
