"""A worker killed in the middle of a broadcast and restarted: every contact gets the email exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.campaigns import OutcomeRecorder
from nudge.embedded import SEARCH_ATTRIBUTES, MailSink, free_port, temporal_binary
from store.campaigns import runs
from store.db import transaction
from workflows.campaigns import TASK_QUEUE, CampaignRunInput, CampaignWorkflow

RECIPIENTS = 400
CONCURRENCY = 2


def _spawn_worker(database_url: str, temporal: str, smtp: str, home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "TEMPORAL_ADDRESS": temporal, "SMTP_URL": smtp,
           "NUDGE_HOME": str(home), "NUDGE_SMTP_CONCURRENCY": str(CONCURRENCY)}
    nudge = str(Path(sys.executable).parent / "nudge")
    return subprocess.Popen([nudge, "worker", "--queue", TASK_QUEUE], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def test_killed_worker_resumes_without_sending_twice(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], database_url: str, workdir: Path,
) -> None:
    # Its own Temporal server and mail sink, so the session's in-process worker cannot pick up this run.
    sink = MailSink(workdir / "restart-mail", free_port())
    sink.start()
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES],
    )
    temporal = env.client.service_client.config.target_host
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT 'restart-' || i, 'restart-' || i || '@example.com' "
            "FROM generate_series(0, :n - 1) i RETURNING id"), {"n": RECIPIENTS})).all())
    r = await api.post("/v1/campaigns", json={"name": "Restart", "subject": "One of {{ campaign.id }}",
                                              "body": "Exactly once, please.", "audience": {"contact_ids": ids}})
    campaign_id = r.json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, campaign_id)

    first = _spawn_worker(database_url, temporal, sink.url, workdir)
    second = None
    try:
        handle = await env.client.start_workflow(
            CampaignWorkflow.run,
            CampaignRunInput(campaign_id=campaign_id, run_id=run.id, batch_size=100, heartbeat_seconds=2),
            id=run.workflow_id, task_queue=TASK_QUEUE,
        )
        for _ in range(600):
            if sink.received >= 100:
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        delivered_at_kill = sink.received
        assert 0 < delivered_at_kill < RECIPIENTS, "the worker must die in the middle of the broadcast"

        second = _spawn_worker(database_url, temporal, sink.url, workdir)
        progress = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        sink.stop()
        await env.shutdown()

    recipients = sorted(str(m["To"]) for m in sink.messages())
    assert recipients == sorted(f"restart-{i}@example.com" for i in range(RECIPIENTS))
    assert progress.sent == RECIPIENTS and progress.failed == 0
    # At most the messages sent but not yet recorded at the instant of the kill reach the server twice: per batch in
    # flight, the recorder's backlog plus one per lane. The mail server files each Message-ID once.
    bound = CampaignRunInput(0, 0).window * (OutcomeRecorder.PER_LANE + 1) * CONCURRENCY
    assert sink.received - RECIPIENTS == sink.duplicates <= bound
    async with sessions() as s:
        counts = await runs.run_counts(s, run.id)
    assert (counts.sent, counts.queued) == (RECIPIENTS, 0)
