"""Segment workflows: the schedules exist once however often they are ensured, and runs replay deterministically."""

from __future__ import annotations

import uuid

from temporalio.client import Client
from temporalio.worker import Replayer

from activities.segments import RefreshInput, RefreshResult
from workflows.segments.refresh import (
    CHANGES_SCHEDULE,
    REFRESH_SCHEDULE,
    TASK_QUEUE,
    ChangesInput,
    ChangesTotals,
    SegmentChangesWorkflow,
    SegmentRefreshWorkflow,
    ensure_schedules,
)


async def test_ensuring_schedules_twice_creates_each_once(temporal_client: Client) -> None:
    await ensure_schedules(temporal_client)
    await ensure_schedules(temporal_client)
    ids = [s.id async for s in await temporal_client.list_schedules()]
    assert ids.count(REFRESH_SCHEDULE) == 1 and ids.count(CHANGES_SCHEDULE) == 1
    described = await temporal_client.get_schedule_handle(REFRESH_SCHEDULE).describe()
    assert described.schedule.action.task_queue == TASK_QUEUE  # type: ignore[attr-defined]


async def test_refresh_and_changes_runs_complete_and_replay(temporal_client: Client, worker: None) -> None:
    tag = uuid.uuid4().hex[:8]
    refresh = await temporal_client.start_workflow(SegmentRefreshWorkflow.run, RefreshInput(time_based_only=False),
                                                   id=f"test-refresh-{tag}", task_queue=TASK_QUEUE)
    changes = await temporal_client.start_workflow(SegmentChangesWorkflow.run, ChangesInput(batch_size=50),
                                                   id=f"test-changes-{tag}", task_queue=TASK_QUEUE)
    assert isinstance(await refresh.result(), RefreshResult)
    totals = await changes.result()
    assert isinstance(totals, ChangesTotals) and totals.batches >= 1
    replayer = Replayer(workflows=[SegmentRefreshWorkflow, SegmentChangesWorkflow])
    for handle in (refresh, changes):
        await replayer.replay_workflow(await handle.fetch_history())
