"""Local-time sends on the time-skipping test server: recipients in three zones (one with an unknown zone, one with
none: both take the campaign's zone) each get the message at 09:00 on their own clock, zone slot after zone slot,
read from workflow time (timers, the batches' scheduled events and the slots' start times in the progress)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.campaigns import CampaignActivities, SendBatchInput
from api.runtime import Runtime
from store.campaigns import lifecycle, occurrences, runs
from store.campaigns.lifecycle import Actor
from store.db import transaction
from tests.skipping import time_skipping
from workflows.campaigns import CampaignRunInput, CampaignWorkflow

QUEUE = "campaigns-local-time-test"
DEFAULT = "America/New_York"
PEOPLE = {"tokyo": "Asia/Tokyo", "london": "Europe/London", "newyork": "America/New_York",
          "nowhere": "Mars/Olympus_Mons", "unset": None}


@pytest.fixture
async def skipping(runtime: Runtime) -> AsyncIterator[WorkflowEnvironment]:
    acts = CampaignActivities(runtime.sessions, runtime.email, runtime.outcomes)
    async with time_skipping() as env, Worker(env.client, task_queue=QUEUE, workflows=[CampaignWorkflow],
                      activities=[acts.open_occurrence, acts.snapshot_audience, acts.plan_local_sends, acts.partition,
                                  acts.send_batch, acts.finish_run, acts.check_variables, acts.close_schedule]):
        yield env


def _nine_local(zone: str, start: datetime) -> datetime:
    """09:00 on the zone's clock, the first at or after `start` (what the test expects, worked out on its own)."""
    local = start.astimezone(ZoneInfo(zone))
    at = local.replace(hour=9, minute=0, second=0, microsecond=0)
    return (at if at >= local else (at + timedelta(days=1)).replace(hour=9)).astimezone(UTC)


async def test_each_zone_gets_it_at_nine_on_its_own_clock(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    async with transaction(sessions) as s:
        ids = {}
        for who, zone in PEOPLE.items():
            ids[who] = await s.scalar(text(
                "INSERT INTO contacts (user_id, email, timezone) VALUES (:u, :u || '@example.com', :z) RETURNING id"),
                {"u": f"local-{who}", "z": zone})
    r = await api.post("/v1/campaigns", json={"name": "Good morning", "subject": "s", "body": "b",
                                              "local_time": "09:00", "timezone": DEFAULT,
                                              "audience": {"contact_ids": list(ids.values())}})
    assert r.status_code == 201, r.text
    assert (r.json()["local_time"], r.json()["timezone"]) == ("09:00", DEFAULT)
    cid = r.json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, cid)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run.id, batch_size=2, local_time="09:00",
                                               default_zone=DEFAULT),
        id=run.workflow_id, task_queue=QUEUE)
    progress = await handle.result()  # up to a day of timers, skipped
    assert (progress.total, progress.sent) == (5, 5)

    events = [e async for e in handle.fetch_history_events()]
    start = events[0].event_time.ToDatetime(tzinfo=UTC)
    expected = sorted({_nine_local(z, start): z for z in ("Asia/Tokyo", "Europe/London", DEFAULT)}.items())
    assert progress.slots is not None
    assert [datetime.fromtimestamp(s.due_at, UTC) for s in progress.slots] == [due for due, _ in expected]
    zones_of = {"Asia/Tokyo": {"Asia/Tokyo"}, "Europe/London": {"Europe/London"},
                DEFAULT: {DEFAULT, "Mars/Olympus_Mons", ""}}  # an unknown zone and none take the campaign's
    assert [set(s.zones) for s in progress.slots] == [zones_of[z] for _, z in expected]
    for slot in progress.slots:  # each slot started when its 09:00 came, by the workflow's clock
        assert slot.started_at is not None and slot.due_at <= slot.started_at < slot.due_at + 60

    # The batches' scheduled events, in history order: each slot's batches after its 09:00, slot after slot.
    batches = []
    for e in events:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and \
                e.activity_task_scheduled_event_attributes.activity_type.name == "send_batch":
            (params,) = await skipping.client.data_converter.decode(
                e.activity_task_scheduled_event_attributes.input.payloads, [SendBatchInput])
            batches.append((e.event_time.ToDatetime(tzinfo=UTC), set(params.zones)))
    order = [zones for _, zones in batches]
    assert [z for i, z in enumerate(order) if i == 0 or order[i - 1] != z] == [zones_of[z] for _, z in expected]
    for at, zones in batches:
        due = next(due for due, z in expected if zones_of[z] == zones)
        assert due <= at < due + timedelta(minutes=1)
    timers = [e for e in events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
    assert len(timers) == len([d for d, _ in expected if d > start])

    async with sessions() as s:
        rows = dict((await s.execute(text(
            "SELECT contact_id, status FROM deliveries WHERE run_id = :r"), {"r": run.id})).all())
        zones = dict((await s.execute(text(
            "SELECT contact_id, zone FROM deliveries WHERE run_id = :r"), {"r": run.id})).all())
    assert rows == {i: "sent" for i in ids.values()}  # each once
    assert zones[ids["tokyo"]] == "Asia/Tokyo" and zones[ids["unset"]] is None

    # The history replays: the slots' timers and batches are deterministic.
    replayed = await Replayer(workflows=[CampaignWorkflow]).replay_workflow(await handle.fetch_history(),
                                                                            raise_on_replay_failure=False)
    assert replayed.replay_failure is None


async def test_a_cancel_before_the_zones_time_sends_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email, timezone) SELECT 'local-cancel-' || i, "
            "'local-cancel-' || i || '@example.com', 'Asia/Tokyo' FROM generate_series(1, 3) i RETURNING id"))).all())
    cid = (await api.post("/v1/campaigns", json={"name": "Too early", "subject": "s", "body": "b",
                                                 "local_time": "09:00", "audience": {"contact_ids": ids}})).json()["id"]
    async with transaction(sessions) as s:
        run = await runs.start_run(s, cid)
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=run.id, local_time="09:00"),
        id=run.workflow_id, task_queue=QUEUE)
    async with transaction(sessions) as s:
        await lifecycle.cancel(s, cid, Actor.system("test"), "not today")
    await handle.signal(CampaignWorkflow.cancel)
    progress = await handle.result()
    assert progress.cancelled and progress.sent == 0
    async with sessions() as s:
        statuses = set((await s.scalars(text("SELECT status FROM deliveries WHERE run_id = :r"), {"r": run.id})).all())
    assert statuses <= {"cancelled"}


async def test_an_occurrence_of_a_recurring_local_time_campaign_opens_its_run_then_sends_by_zone(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], skipping: WorkflowEnvironment,
) -> None:
    """What the schedule starts (no run yet, `recurring`), on the time-skipping server, which has no schedules."""
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email, timezone) SELECT 'local-occ-' || i, 'local-occ-' || i || "
            "'@example.com', (ARRAY['Asia/Tokyo', 'Europe/London'])[i] FROM generate_series(1, 2) i RETURNING id"
        ))).all())
    cid = (await api.post("/v1/campaigns", json={
        "name": "Daily local", "subject": "s", "body": "b", "local_time": "09:00",
        "recurrence": {"cron": "0 0 * * *"}, "audience": {"contact_ids": ids}})).json()["id"]
    async with transaction(sessions) as s:
        assert await occurrences.start_recurring(s, cid, None) is not None  # what the launch does before the schedule
    handle = await skipping.client.start_workflow(
        CampaignWorkflow.run, CampaignRunInput(campaign_id=cid, run_id=0, recurring=True, local_time="09:00"),
        id=f"{occurrences.occurrence_workflow_id(cid)}-2026-12-03T00:00:00Z", task_queue=QUEUE)
    progress = await handle.result()
    assert (progress.number, progress.total, progress.sent) == (1, 2, 2)
    assert progress.slots is not None and sorted(z for s in progress.slots for z in s.zones) == [
        "Asia/Tokyo", "Europe/London"]
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "scheduled"  # waiting for the next occurrence
    assert [(r["number"], r["status"], r["sent"]) for r in body["runs"]] == [(1, "completed", 2)]
