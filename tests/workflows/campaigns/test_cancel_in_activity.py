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

from activities.campaigns import Occurrence, OccurrenceInput, RunInput, RunTotals, ScheduleInput
from workflows.campaigns import CampaignRunInput, CampaignWorkflow


class Fakes:
    def __init__(self) -> None:
        self.snapshot_started = asyncio.Event()
        self.opening = asyncio.Event()
        self.opened: list[OccurrenceInput] = []
        self.finished: list[RunInput] = []
        self.closed: list[ScheduleInput] = []

    @activity.defn(name="open_occurrence")
    async def open_occurrence(self, params: OccurrenceInput) -> Occurrence:
        self.opened.append(params)
        if len(self.opened) == 1:  # the first call is cancelled (it may have opened the run: it commits)
            self.opening.set()
            while True:
                activity.heartbeat()
                await asyncio.sleep(0.1)
        return Occurrence(7, 1)

    @activity.defn(name="close_schedule")
    async def close_schedule(self, params: ScheduleInput) -> bool:
        self.closed.append(params)
        return True

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


async def test_an_occurrence_cancelled_while_opening_its_run_closes_that_run_and_ends_the_schedule(
    temporal_client: Client,
) -> None:
    fakes = Fakes()
    queue = f"campaigns-cancel-test-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_client, task_queue=queue, workflows=[CampaignWorkflow],
                      activities=[fakes.open_occurrence, fakes.snapshot_audience, fakes.finish_run,
                                  fakes.close_schedule]):
        handle = await temporal_client.start_workflow(
            CampaignWorkflow.run, CampaignRunInput(campaign_id=5, run_id=0, recurring=True),
            id=f"campaign:5:recurring-{uuid.uuid4().hex[:8]}", task_queue=queue)
        await asyncio.wait_for(fakes.opening.wait(), timeout=30)
        await handle.cancel()
        progress = await asyncio.wait_for(handle.result(), timeout=30)
    assert progress.cancelled and progress.done and progress.number == 1
    assert len(fakes.opened) == 2 and fakes.opened[0].workflow_id == fakes.opened[1].workflow_id  # found again
    assert [(f.run_id, f.cancelled) for f in fakes.finished] == [(7, True)]
    assert not fakes.snapshot_started.is_set()
    assert [c.campaign_id for c in fakes.closed] == [5]
