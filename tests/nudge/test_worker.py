"""What the Temporal UI shows for an idle deployment: its own Temporal server, a fresh database, all workers and
the start-up `nudge dev` runs. A handful of labelled housekeeping workflows, a list that does not grow with
time, and every workflow carries `NudgeKind` and a summary, scheduled ones included."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest
from temporalio.client import Client, WorkflowExecution
from temporalio.common import SearchAttributeKey
from temporalio.testing import WorkflowEnvironment

from api.runtime import Runtime
from core.settings import Settings
from nudge.embedded import SEARCH_ATTRIBUTES, MailSink, temporal_binary
from nudge.worker import build_workers, ensure_housekeeping
from store.db import plain_url
from store.migrate import upgrade
from workflows.schedules import NUDGE_KIND

IDLE_SECONDS = 30
LONG_LIVED = 5  # segments-changes, segments-refresh, tasks-progress, tasks-rewards, deliveries-sweeper


@pytest.fixture
async def fresh_deployment(database_url: str, mail_sink: MailSink, workdir: Path) -> AsyncIterator[Client]:
    """A Temporal dev server and database of its own, with every worker running after `nudge dev`'s start-up."""
    name = f"nudge_idle_{uuid.uuid4().hex[:8]}"
    admin = plain_url(database_url).rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = plain_url(database_url).rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(), dev_server_log_level="error",
        search_attributes=[SearchAttributeKey.for_keyword(n) for n in SEARCH_ATTRIBUTES])
    runtime = Runtime.build(Settings(home=workdir / name, database_url=url, smtp_url=mail_sink.url,
                                     temporal_address=env.client.service_client.config.target_host), pool_size=4)
    try:
        async with contextlib.AsyncExitStack() as workers:
            for worker in build_workers(env.client, runtime):
                await workers.enter_async_context(worker)
            await ensure_housekeeping(env.client)
            yield env.client
    finally:
        await runtime.close()
        await env.shutdown()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _listed(client: Client) -> list[WorkflowExecution]:
    return [w async for w in client.list_workflows()]


async def test_an_idle_deployment_lists_a_handful_of_labelled_workflows_that_does_not_grow(
    fresh_deployment: Client,
) -> None:
    client = fresh_deployment
    # Run every Schedule once, as a day would.
    schedules = [s.id async for s in await client.list_schedules()]
    assert sorted(schedules) == ["campaigns-deferred", "events-prune", "ledger-expiry", "ledger-reconcile",
                                 "ledger-retention", "promotions-sweep"]
    for schedule_id in schedules:
        await client.get_schedule_handle(schedule_id).trigger()
    deadline = asyncio.get_running_loop().time() + 30
    while len(await _listed(client)) < LONG_LIVED + len(schedules) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.2)

    first = await _listed(client)
    await asyncio.sleep(IDLE_SECONDS)
    later = await _listed(client)

    # The long-lived workflows (two of segments, two of tasks) and one run per Schedule; a Schedule crossing its
    # next due time during the wait may add one (the retired 5-second consumer Schedule added six here).
    assert len(first) == LONG_LIVED + len(schedules), [w.id for w in first]
    assert len(later) - len(first) <= 1, [w.id for w in later]
    kinds = {w.id.split("-run-")[0]: w.typed_search_attributes.get(NUDGE_KIND) for w in later}
    assert kinds == {"segments-changes": "segment-changes", "segments-refresh": "segment-refresh",
                     "tasks-progress": "task-progress", "tasks-rewards": "reward-dispatch",
                     "deliveries-sweeper": "deliveries",
                     "events-prune": "events-prune", "ledger-reconcile": "reconciliation",
                     "ledger-expiry": "expiry", "ledger-retention": "retention",
                     "promotions-sweep": "promotions-sweep", "campaigns-deferred": "campaigns-deferred"}
    for w in later:
        summary = await (await client.get_workflow_handle(w.id, run_id=w.run_id).describe()).static_summary()
        assert summary, f"{w.id} has no summary in the Temporal UI"
