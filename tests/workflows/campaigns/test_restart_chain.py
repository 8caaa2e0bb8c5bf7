"""A worker killed in the middle of a campaign that goes through the delivery service (an SMS chain, to the Twilio
simulator), and restarted: every recipient gets exactly one message, by delivery key and by what the provider
received. The killed worker may leave leased attempts (recorded `queued` before the provider call, their result not
yet recorded); the product's answer is the sweeper, which sends *the same attempt* again once its lease has run out,
under the same idempotency key, so the test sends the run's due plans as the sweeper would after the lease
(docs/campaigns.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from activities.campaigns import CampaignActivities
from activities.channels.delivery import service_for
from api.runtime import Runtime
from channels.simulators import Simulators, read_inbox
from domain.channels.policy import DeliveryPolicy
from nudge.embedded import SEARCH_ATTRIBUTES, temporal_binary
from store.campaigns import runs
from store.channels.records import Step
from store.db import transaction
from workflows.campaigns import TASK_QUEUE, CampaignRunInput, CampaignWorkflow

RECIPIENTS = 800
BATCH = 50  # 16 batches, 4 at a time: the kill lands with most of the run still to go
PHONE = "+1555771{:04d}"


def _spawn_worker(runtime: Runtime, temporal: str, simulators: Simulators, home: Path) -> subprocess.Popen[bytes]:
    settings = runtime.settings
    env = {**os.environ, "DATABASE_URL": str(settings.database_url), "TEMPORAL_ADDRESS": temporal,
           "NUDGE_HOME": str(home), "NUDGE_API_PORT": str(settings.api_port),
           "NUDGE_WEBHOOK_SECRET": str(settings.webhook_secret),
           **{f"NUDGE_{k.upper()}": str(v) for k, v in simulators.settings().items()}}
    if settings.smtp_url:
        env["SMTP_URL"] = settings.smtp_url
    nudge = str(Path(sys.executable).parent / "nudge")
    log = (home / "restart-chain-worker.log").open("ab")
    return subprocess.Popen([nudge, "worker", "--queue", TASK_QUEUE], env=env, stdout=log, stderr=log)


async def _recorded(sessions: async_sessionmaker[AsyncSession], campaign_id: int) -> int:
    async with sessions() as s:
        return int(await s.scalar(text(
            "SELECT count(*) FROM delivery_attempts WHERE key LIKE :k AND status <> 'queued'"),
            {"k": f"delivery:{campaign_id}:%"}) or 0)


async def test_killed_worker_on_the_delivery_service_path_loses_and_duplicates_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], runtime: Runtime, simulators: Simulators,
    workdir: Path,
) -> None:
    # Its own Temporal server, so the session's in-process worker cannot pick up this run.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES],
    )
    temporal = env.client.service_client.config.target_host
    phones = [PHONE.format(i) for i in range(RECIPIENTS)]
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, phone) SELECT 'restart-sms-' || i, :prefix || lpad(i::text, 4, '0') "
            "FROM generate_series(0, :n - 1) i ORDER BY i RETURNING id"), {"n": RECIPIENTS, "prefix": PHONE[:-6]})
        ).all())
    r = await api.post("/v1/campaigns", json={
        "name": "Restart over SMS", "chain": ["sms"], "subject": "-", "body": "-",
        "content": {"sms": {"text": "One of {{ campaign.id }}, exactly once."}}, "audience": {"contact_ids": ids}})
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, campaign_id)

    first = _spawn_worker(runtime, temporal, simulators, workdir)
    second = None
    try:
        handle = await env.client.start_workflow(
            CampaignWorkflow.run,
            CampaignRunInput(campaign_id=campaign_id, run_id=run.id, batch_size=BATCH),
            id=run.workflow_id, task_queue=TASK_QUEUE,
        )
        for _ in range(3000):
            if await _recorded(sessions, campaign_id) >= BATCH:
                break
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        recorded_at_kill = await _recorded(sessions, campaign_id)
        assert 0 < recorded_at_kill < RECIPIENTS, "the worker must die in the middle of the campaign"

        second = _spawn_worker(runtime, temporal, simulators, workdir)
        progress = await asyncio.wait_for(handle.result(), timeout=180)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        await env.shutdown()
    assert progress.done and not progress.cancelled

    # What the sweeper does once the killed worker's leases have run out (the same attempts, once more), for this
    # campaign's plans only (an unscoped sweep would take every test's due plans).
    service = service_for(sessions, runtime.channels, runtime.settings)
    later = datetime.now(UTC) + DeliveryPolicy().lease + timedelta(minutes=1)
    async with sessions() as s:
        planned = [Step(r.contact_id, r.key, ["sms"], {}) for r in (await s.execute(text(
            "SELECT contact_id, key FROM deliveries WHERE run_id = :r"), {"r": run.id})).all()]
    while (await service.sweep(only=planned, limit=len(planned), now=later)).claimed:
        pass

    async with sessions() as s:
        keys = (await s.scalars(text("SELECT key FROM deliveries WHERE run_id = :r"), {"r": run.id})).all()
        statuses = Counter((await s.scalars(text("SELECT status FROM deliveries WHERE run_id = :r"),
                                            {"r": run.id})).all())
        attempts = (await s.execute(text("""
            SELECT key, channel, status, provider_message_id FROM delivery_attempts WHERE key LIKE :k
        """), {"k": f"delivery:{campaign_id}:%"})).all()
    assert sorted(keys) == sorted(f"delivery:{campaign_id}:s1:{i}" for i in ids)  # one delivery per recipient
    assert set(statuses) <= {"sent", "deferred"}, statuses  # deferred: settled before the sweep resent it
    # The campaigns' housekeeping (the `campaigns-deferred` schedule's activity) settles those again: all sent.
    settled = await CampaignActivities(sessions, runtime.email, runtime.outcomes).settle_deferred()
    async with sessions() as s:
        after = Counter((await s.scalars(text("SELECT status FROM deliveries WHERE run_id = :r"),
                                         {"r": run.id})).all())
    assert after == Counter({"sent": RECIPIENTS}), after
    assert settled >= statuses["deferred"]  # (other tests' deferred rows whose plans moved on settle too)
    assert Counter(a.key for a in attempts) == Counter(keys)  # one attempt per delivery key, none lost
    assert {a.channel for a in attempts} == {"sms"}
    assert all(a.status in ("sent", "delivered") and a.provider_message_id for a in attempts), [
        a for a in attempts if a.status not in ("sent", "delivered")]

    # The provider received each recipient's message once (a resend under the same idempotency key is filed once).
    inbox = [m for m in read_inbox(simulators.directory, "twilio") if m["to"] in set(phones)]
    assert Counter(m["to"] for m in inbox) == Counter(phones)
    assert len({m["id"] for m in inbox}) == RECIPIENTS
    assert {a.provider_message_id for a in attempts} == {m["id"] for m in inbox}
