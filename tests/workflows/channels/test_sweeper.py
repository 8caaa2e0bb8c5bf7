"""The deliveries sweeper on a real Temporal server: a worker stopped during a WeChat message's receipt window,
the window passing while no worker runs, a new worker started: exactly one SMS goes out. And the worker's start-up
starts the one long-lived sweeper."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from activities.channels.sweeper import DeliveryActivities
from channels.simulators import Simulators
from tests.store.channels.conftest import MakeService, attempts, make_person, step
from workflows.channels.sweeper import SWEEPER_ID, DeliverySweeperWorkflow, SweeperInput, ensure_sweeper
from workflows.schedules import NUDGE_KIND, kind

# Longer than a worker's shutdown takes (about a second here: its sweeper learns of the shutdown only when the
# worker's polls end), so the window is still open when the worker is gone.
WINDOW = timedelta(seconds=4)


def worker(client: Client, queue: str, activities: DeliveryActivities) -> Worker:
    return Worker(client, task_queue=queue, workflows=[DeliverySweeperWorkflow],
                  activities=[activities.send_steps, activities.sweep_deliveries],
                  graceful_shutdown_timeout=timedelta(seconds=5))


async def test_a_worker_stopped_during_the_window_leads_to_exactly_one_sms(
        temporal_client: Client, sessions: async_sessionmaker[AsyncSession], make_service: MakeService,
        simulators: Simulators) -> None:
    service = make_service(windows={"wechat": WINDOW})
    activities = DeliveryActivities(sessions, service)
    queue, workflow_id = f"test-channels-{uuid.uuid4().hex[:8]}", f"test-sweeper-{uuid.uuid4().hex[:8]}"
    person = await make_person(sessions, openid_prefix="silent-")
    s = step(person, ["wechat", "sms"])

    first = worker(temporal_client, queue, activities)
    running = asyncio.create_task(first.run())
    handle = await temporal_client.start_workflow(
        DeliverySweeperWorkflow.run, SweeperInput(poll_seconds=0.05, window_seconds=1.0), id=workflow_id,
        task_queue=queue, search_attributes=kind("deliveries"), static_summary="test sweeper")
    try:
        await service.send([s])
        window_ends = asyncio.get_running_loop().time() + WINDOW.total_seconds()
        await first.shutdown()  # the worker goes away inside the window
        await running
        assert asyncio.get_running_loop().time() < window_ends, "the worker took the whole window to stop"
        await asyncio.sleep(window_ends + 0.5 - asyncio.get_running_loop().time())  # it passes with no worker
        assert [m for m in simulators.twilio.inbox.read() if m.get("to") == person.phone] == []

        second = worker(temporal_client, queue, activities)
        async with second:
            for _ in range(200):
                found = await attempts(sessions, person, s.key)
                if len(found) == 2:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # let further sweeps run: they must send nothing more
            texts = [m for m in simulators.twilio.inbox.read() if m.get("to") == person.phone]
            assert len(texts) == 1
            assert [c for c, _ in await attempts(sessions, person, s.key)] == ["wechat", "sms"]
    finally:
        await handle.terminate("test over")


async def test_start_up_runs_one_sweeper(temporal_client: Client, worker: None) -> None:
    await ensure_sweeper(temporal_client)
    await ensure_sweeper(temporal_client)  # every process calls it: still one
    description = await temporal_client.get_workflow_handle(SWEEPER_ID).describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    assert description.typed_search_attributes.get(NUDGE_KIND) == "deliveries"
