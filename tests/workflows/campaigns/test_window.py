"""The sliding window of batches: cancel at the next batch, and two worker processes sharing one run."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from nudge.embedded import SEARCH_ATTRIBUTES, MailSink, free_port, temporal_binary
from store.campaigns import runs
from store.db import transaction
from workflows.campaigns import TASK_QUEUE, CampaignRunInput, CampaignWorkflow


async def _audience(sessions: async_sessionmaker[AsyncSession], tag: str, n: int) -> list[int]:
    async with transaction(sessions) as s:
        return list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT :tag || i, :tag || i || '@example.com' "
            "FROM generate_series(0, :n - 1) i RETURNING id"), {"tag": tag, "n": n})).all())


async def test_cancel_stops_at_the_next_batch_and_records_the_unsent(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], temporal_client: Client,
    mail_sink: MailSink, worker: None,
) -> None:
    ids = await _audience(sessions, "cancel-", 1000)  # 20 batches of 50 in the test settings
    cid = (await api.post("/v1/campaigns", json={"name": "Cancelled", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    handle = temporal_client.get_workflow_handle_for(CampaignWorkflow.run, f"campaign:{cid}:run:1")
    for _ in range(600):  # cancel once sending has begun
        if (await handle.query(CampaignWorkflow.progress)).sent:
            break
        await asyncio.sleep(0.01)
    r = await api.post(f"/v1/campaigns/{cid}/cancel", json={"note": "wrong offer"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    progress = await asyncio.wait_for(handle.result(), timeout=60)
    assert progress.cancelled and progress.done

    run = (await api.get(f"/v1/campaigns/{cid}")).json()["run"]
    assert run["status"] == "cancelled" and run["queued"] == 0
    assert run["sent"] + run["cancelled"] == 1000 and 0 < run["sent"] < 1000
    mine = [m for m in mail_sink.messages() if str(m["To"]).startswith("cancel-")]
    assert len(mine) == run["sent"]  # nothing went out after the run closed
    await asyncio.sleep(0.5)
    assert (await api.get(f"/v1/campaigns/{cid}")).json()["run"]["sent"] == run["sent"]
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [m["to_status"] for m in moves] == ["running", "cancelled"]


def _spawn_worker(database_url: str, temporal: str, smtp: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal, "SMTP_URL": smtp,
           "NUDGE_HOME": str(home)}
    nudge = str(Path(sys.executable).parent / "nudge")
    return subprocess.Popen([nudge, "worker", "--queue", TASK_QUEUE], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def test_two_worker_processes_share_one_run_without_a_duplicate(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], database_url: str, workdir: Path,
) -> None:
    recipients = 600
    sink = MailSink(workdir / "window-mail", free_port())
    sink.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES],
    )
    temporal = env.client.service_client.config.target_host
    ids = await _audience(sessions, "window-", recipients)
    campaign_id = (await api.post("/v1/campaigns", json={"name": "Two workers", "subject": "s", "body": "b",
                                                         "audience": {"contact_ids": ids}})).json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, campaign_id)
    workers = [_spawn_worker(database_url, temporal, sink.url, workdir) for _ in range(2)]
    try:
        for _ in range(600):  # both processes polling for activities before the run starts
            described = await env.client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
                namespace=env.client.namespace, task_queue=TaskQueue(name=TASK_QUEUE),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
            if len({p.identity for p in described.pollers}) >= 2:
                break
            await asyncio.sleep(0.1)
        handle = await env.client.start_workflow(
            CampaignWorkflow.run, CampaignRunInput(campaign_id=campaign_id, run_id=run.id, batch_size=20, window=4),
            id=run.workflow_id, task_queue=TASK_QUEUE,
        )
        progress = await asyncio.wait_for(handle.result(), timeout=120)
        identities = {e.activity_task_started_event_attributes.identity
                      async for e in handle.fetch_history_events()
                      if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED}
    finally:
        for proc in workers:
            proc.kill()
            proc.wait(10)
        sink.stop()
        await env.shutdown()

    assert len(identities) == 2, identities  # both processes sent batches of this run
    assert sorted(str(m["To"]) for m in sink.messages()) == sorted(f"window-{i}@example.com"
                                                                    for i in range(recipients))
    assert sink.duplicates == 0 and progress.sent == recipients


async def test_cancelling_the_workflow_in_temporal_cancels_the_campaign(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None,
) -> None:
    ids = await _audience(sessions, "tcancel-", 1000)
    cid = (await api.post("/v1/campaigns", json={"name": "Cancelled in the UI", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    handle = temporal_client.get_workflow_handle_for(CampaignWorkflow.run, f"campaign:{cid}:run:1")
    for _ in range(600):
        if (await handle.query(CampaignWorkflow.progress)).sent:
            break
        await asyncio.sleep(0.01)
    await handle.cancel()  # what the Temporal UI's "Request cancellation" does
    progress = await asyncio.wait_for(handle.result(), timeout=60)
    assert progress.cancelled
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "cancelled" and body["run"]["queued"] == 0
    assert body["run"]["sent"] + body["run"]["cancelled"] == 1000
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [(m["to_status"], m["key_name"]) for m in moves] == [("running", "test admin"), ("cancelled", "run 1")]
