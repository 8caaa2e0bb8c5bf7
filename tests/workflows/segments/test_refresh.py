"""Keeping segments fresh on a real Temporal server: start-up replaces the retired Schedules with one long-lived
workflow each (labelled for the Temporal UI); the consumer picks a change up within seconds and adds no history
while idle; both long-lived workflows continue as new and replay deterministically, as do the one-shot runs an
older release may leave in flight."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleSpec,
    ScheduleState,
    WorkflowExecution,
    WorkflowExecutionStatus,
)
from temporalio.worker import Replayer

from activities.segments import RefreshInput, RefreshResult
from domain.events import parse_batch
from store.db import transaction
from store.ingest import ingest
from store.segments.definitions import create_segment
from store.segments.membership import member_count
from workflows.schedules import NUDGE_KIND
from workflows.segments.changes import (
    CONSUMER_ID,
    ChangesInput,
    ChangesTotals,
    ConsumerInput,
    SegmentChangesConsumerWorkflow,
    SegmentChangesWorkflow,
)
from workflows.segments.refresh import (
    REFRESH_ID,
    RETIRED_SCHEDULES,
    TASK_QUEUE,
    RefreshLoopInput,
    SegmentRefreshLoopWorkflow,
    SegmentRefreshWorkflow,
    ensure_schedules,
)


async def _runs(client: Client, workflow_id: str, at_least: int = 1, timeout: float = 30) -> list[WorkflowExecution]:
    """The runs of `workflow_id`, newest first, once there are `at_least` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
        if len(runs) >= at_least or asyncio.get_running_loop().time() > deadline:
            return runs
        await asyncio.sleep(0.2)


async def test_start_up_replaces_the_retired_schedules_with_one_labelled_workflow_each(
    temporal_client: Client, worker: None,
) -> None:
    # What an older release left: the every-5-seconds consumer and the 15-minute refresh as Schedules.
    for schedule_id, run, arg in ((RETIRED_SCHEDULES[0], SegmentChangesWorkflow.run, ChangesInput()),
                                  (RETIRED_SCHEDULES[1], SegmentRefreshWorkflow.run, RefreshInput())):
        await temporal_client.create_schedule(schedule_id, Schedule(
            action=ScheduleActionStartWorkflow(run, arg, id=f"{schedule_id}-run", task_queue=TASK_QUEUE),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=timedelta(seconds=5))]),
            state=ScheduleState(paused=True)))

    # Every process ensures at start-up, several at once.
    await asyncio.gather(*(ensure_schedules(temporal_client) for _ in range(3)))
    await ensure_schedules(temporal_client)

    schedules = [s.id async for s in await temporal_client.list_schedules()]
    assert not set(RETIRED_SCHEDULES) & set(schedules), "an upgraded deployment must not run both"
    for workflow_id, kind in ((CONSUMER_ID, "segment-changes"), (REFRESH_ID, "segment-refresh")):
        running = [w async for w in temporal_client.list_workflows(
            f"WorkflowId = '{workflow_id}' AND ExecutionStatus = 'Running'")]
        assert len(running) == 1
        assert running[0].typed_search_attributes.get(NUDGE_KIND) == kind
        described = await temporal_client.get_workflow_handle(workflow_id).describe()
        if described.run_id == described.raw_description.workflow_execution_info.first_run_id:
            assert await described.static_summary()  # continue-as-new does not carry the summary over


async def test_the_consumer_picks_up_a_change_within_seconds_and_idles_without_history(
    temporal_client: Client, segment_consumer: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with transaction(sessions) as s:
        segment = await create_segment(s, name=f"{tag} vips", kind="rule",
                                       rule={"field": "traits.tier", "op": "eq", "value": f"vip-{tag}"})
    await segment_consumer.caught_up()
    consumer = temporal_client.get_workflow_handle(CONSUMER_ID)
    before = len((await consumer.fetch_history()).events)

    async with transaction(sessions) as s:
        await ingest(s, parse_batch({"batch": [{"type": "identify", "userId": f"vip-{tag}",
                                                "traits": {"tier": f"vip-{tag}"}}]},
                                    received_at=datetime.now(UTC), new_id=lambda: uuid.uuid4().hex))
    assert await segment_consumer.caught_up() < 5
    async with sessions() as s:
        assert await member_count(s, segment.id) == 1

    await asyncio.sleep(2)  # idle: the consumer polls inside its activity, the history does not move
    after = (await consumer.fetch_history()).events
    assert len(after) - before <= 6, "at most one step of the consumer ended meanwhile"


async def test_the_long_lived_workflows_continue_as_new_and_replay(temporal_client: Client, worker: None) -> None:
    tag = uuid.uuid4().hex[:8]
    consumer_id, refresh_id = f"test-consumer-{tag}", f"test-refresh-loop-{tag}"
    await temporal_client.start_workflow(SegmentChangesConsumerWorkflow.run,
                                         ConsumerInput(batch_size=50, poll_seconds=0.1, window_seconds=0.3, steps=2),
                                         id=consumer_id, task_queue=TASK_QUEUE)
    await temporal_client.start_workflow(SegmentRefreshLoopWorkflow.run,
                                         RefreshLoopInput(every_seconds=0.2, time_based_only=False, refreshes=2),
                                         id=refresh_id, task_queue=TASK_QUEUE)
    consumer_runs = await _runs(temporal_client, consumer_id, at_least=2)
    refresh_runs = await _runs(temporal_client, refresh_id, at_least=2)
    handle = temporal_client.get_workflow_handle(consumer_id)
    assert isinstance(await handle.query(SegmentChangesConsumerWorkflow.progress), ChangesTotals)
    assert isinstance(await temporal_client.get_workflow_handle(refresh_id).query(
        SegmentRefreshLoopWorkflow.last_refresh), RefreshResult | None)
    for workflow_id in (consumer_id, refresh_id):
        await temporal_client.get_workflow_handle(workflow_id).terminate("test over")

    replayer = Replayer(workflows=[SegmentChangesConsumerWorkflow, SegmentRefreshLoopWorkflow])
    for runs in (consumer_runs, refresh_runs):
        first = runs[-1]
        assert first.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
        await replayer.replay_workflow(await temporal_client.get_workflow_handle(
            first.id, run_id=first.run_id).fetch_history())


async def test_one_shot_runs_an_older_release_left_in_flight_complete_and_replay(
    temporal_client: Client, worker: None,
) -> None:
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
