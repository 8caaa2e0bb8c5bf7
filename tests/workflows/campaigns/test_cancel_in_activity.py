"""A run cancelled in Temporal (as the Temporal UI does) while one of its activities runs closes as cancelled: the
cancel reaches the workflow as the activity's error (an ActivityError caused by the cancel, not asyncio's), and the
run still records its unsent recipients through `finish_run`. Fake activities under the real names isolate the
workflow's handling; the real ones are tested elsewhere (test_recurring_end.py cancels on a timer)."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from activities.campaigns import RunInput, RunTotals
from workflows.campaigns import CampaignRunInput, CampaignWorkflow


class Fakes:
    def __init__(self) -> None:
        self.snapshot_started = asyncio.Event()
        self.finished: list[RunInput] = []

    @activity.defn(name="snapshot_audience")
    async def snapshot_audience(self, params: RunInput) -> int:
        self.snapshot_started.set()
        while True:  # until the workflow's cancel reaches it through its heartbeat
            activity.heartbeat()
            await asyncio.sleep(0.1)

    @activity.defn(name="finish_run")
    async def finish_run(self, params: RunInput) -> RunTotals:
        self.finished.append(params)
        return RunTotals(total=0, sent=0, failed=0, cancelled=3)


async def test_a_run_cancelled_during_an_activity_closes_as_cancelled(temporal_client: Client) -> None:
    fakes = Fakes()
    queue = f"campaigns-cancel-test-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[CampaignWorkflow],
                      activities=[fakes.snapshot_audience, fakes.finish_run]):
        handle = await temporal_client.start_workflow(
            CampaignWorkflow.run, CampaignRunInput(campaign_id=1, run_id=1, heartbeat_seconds=5),
            id=f"campaign-cancel-test-{uuid.uuid4().hex[:8]}", task_queue=queue)
        await asyncio.wait_for(fakes.snapshot_started.wait(), timeout=30)
        await handle.cancel()
        progress = await asyncio.wait_for(handle.result(), timeout=30)
    assert progress.cancelled and progress.done and progress.unsent_cancelled == 3
    assert [f.cancelled for f in fakes.finished] == [True]
