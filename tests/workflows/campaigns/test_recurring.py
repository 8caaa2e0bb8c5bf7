"""A recurring campaign through the real API, Temporal Schedule and worker: the schedule starts one CampaignWorkflow per
occurrence (backfilled over three past days, so the schedule's own cron and zone decide the times), each opens its
own numbered run with its own recipients snapshot and delivery keys; a retried occurrence finds its run again; pause
and cancel act on the schedule."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow, ScheduleBackfill, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from nudge.embedded import MailSink
from store.campaigns import occurrences, runs
from store.db import transaction
from tests.conftest import DashboardSignIn
from workflows.campaigns import CampaignProgress, CampaignWorkflow
from workflows.schedules import NUDGE_KIND

ZONE = "Asia/Shanghai"


async def _contacts(api: httpx.AsyncClient, tag: str, n: int = 3) -> list[int]:
    ids = []
    for i in range(n):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def _until(api: httpx.AsyncClient, cid: int, done: object, tries: int = 600) -> dict:
    body: dict = {}
    for _ in range(tries):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if done(body):  # type: ignore[operator]
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {cid} never got there: {body}")


async def _gone(client: Client, schedule_id: str) -> bool:
    try:
        await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        return exc.status == RPCStatusCode.NOT_FOUND
    return False


async def test_recurring_campaign_fires_at_its_times_as_numbered_runs_without_duplicates(
    api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
    mail_sink: MailSink, api_url: str, admin_key: str, dashboard_sign_in: DashboardSignIn,
) -> None:
    ids = await _contacts(api, "recur")
    # A daily time twelve hours away from now in Shanghai: the schedule's own next firing is never during the test.
    local = datetime.now(ZoneInfo(ZONE)) + timedelta(hours=12)
    cron = f"{local.minute} {local.hour} * * *"
    r = await api.post("/v1/campaigns", json={"name": "Daily digest", "subject": "Digest", "body": "b",
                                              "audience": {"contact_ids": ids},
                                              "recurrence": {"cron": cron, "timezone": ZONE}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "scheduled" and body["run"] is None
    assert body["recurrence"] | {"schedule_id": None} == {"cron": cron, "every_seconds": None, "timezone": ZONE,
                                                          "start": None, "until": None, "schedule_id": None}

    handle = temporal_client.get_schedule_handle(f"campaign-schedule:{cid}")
    described = await handle.describe()
    spec = described.schedule.spec  # the server keeps the cron as a calendar
    assert spec.time_zone_name == ZONE and len(spec.calendars) == 1
    assert (spec.calendars[0].hour[0].start, spec.calendars[0].minute[0].start) == (local.hour, local.minute)
    assert described.typed_search_attributes.get(NUDGE_KIND) == "campaign"
    action = described.schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow)
    assert action.typed_search_attributes.get(NUDGE_KIND) == "campaign"
    summary = action.static_summary  # described schedules hand it back as a payload
    if not isinstance(summary, str):
        summary = temporal_client.data_converter.payload_converter.from_payload(summary, str)
    assert summary == f"Campaign #{cid} 'Daily digest', an occurrence: email"

    # Three occurrences of the last three days, one after another, at the times the cron names in Shanghai.
    now = datetime.now(UTC)
    await handle.backfill(ScheduleBackfill(now - timedelta(days=3), now, overlap=ScheduleOverlapPolicy.BUFFER_ALL))
    body = await _until(api, cid, lambda b: len(b["runs"] or []) == 3 and b["runs"][0]["status"] == "completed"
                        and b["status"] == "scheduled")

    fired = sorted(r["scheduled_at"] for r in body["runs"])
    expected = [datetime.combine((local - timedelta(days=d)).date(), time(local.hour, local.minute),
                                 ZoneInfo(ZONE)).astimezone(UTC) for d in (3, 2, 1)]
    expected = [e for e in expected if now - timedelta(days=3) <= e <= now]
    assert [datetime.fromisoformat(f) for f in fired] == expected
    by_number = sorted(body["runs"], key=lambda r: r["number"])
    assert [r["number"] for r in by_number] == [1, 2, 3]
    assert [r["scheduled_at"] for r in by_number] == fired  # numbered in the order of their occurrences
    assert all((r["total"], r["sent"], r["status"]) == (3, 3, "completed") for r in by_number)
    assert len({r["workflow_id"] for r in by_number}) == 3

    async with sessions() as s:
        keys = (await s.scalars(text("SELECT key FROM deliveries WHERE campaign_id = :c"), {"c": cid})).all()
    assert len(keys) == 9 and len(set(keys)) == 9
    assert {k.split(":")[2] for k in keys} == {"s1", "r2.s1", "r3.s1"}
    mine = [m for m in mail_sink.messages() if str(m["To"]).startswith("recur-")]
    assert len(mine) == 9 and len({m["Message-ID"] for m in mine}) == 9

    # An occurrence's history replays (its run opened by an activity, its time read from the search attribute).
    history = await temporal_client.get_workflow_handle(by_number[1]["workflow_id"]).fetch_history()
    replayed = await Replayer(workflows=[CampaignWorkflow]).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None

    # A retried first activity of occurrence 2 finds run 2 again; its snapshot again adds nobody.
    second = by_number[1]
    async with transaction(sessions) as s:
        again = await occurrences.open_occurrence(s, cid, second["workflow_id"], None)
        assert again is not None and again.number == 2
        assert await runs.snapshot_audience(s, again.id) == 3
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM deliveries WHERE campaign_id = :c"), {"c": cid}) == 9
        assert await s.scalar(text("SELECT count(*) FROM campaign_runs WHERE campaign_id = :c"), {"c": cid}) == 3

    # The campaign page lists the three runs with their counts and names the schedule.
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as browser:
        assert (await dashboard_sign_in(browser, admin_key)).status_code in (200, 303)
        page = (await browser.get(f"/dashboards/campaigns/{cid}")).text
    assert f"campaign-schedule:{cid}" in page and "Recurring: cron" in page
    for n in (1, 2, 3):
        row = re.search(rf'<tr data-run="{n}">(.*?)</tr>', page, re.S)
        assert row is not None and re.search(r'class="num sent">3<', row[1]), page

    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [(m["from_status"], m["to_status"]) for m in moves] == [("draft", "scheduled")] + [
        ("scheduled", "running"), ("running", "scheduled")] * 3

    r = await api.post(f"/v1/campaigns/{cid}/cancel", json={"note": "enough"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await _gone(temporal_client, f"campaign-schedule:{cid}")


async def test_pausing_a_recurring_campaign_pauses_its_schedule(api: httpx.AsyncClient, worker: None,
                                                                temporal_client: Client) -> None:
    ids = await _contacts(api, "recur-pause", 1)
    r = await api.post("/v1/campaigns", json={"name": "Weekly", "subject": "s", "body": "b",
                                              "audience": {"contact_ids": ids}})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch", json={"recurrence": {"every": "P7D"}})
    assert r.status_code == 202, r.text
    assert r.json()["recurrence"]["every_seconds"] == 7 * 86400
    handle = temporal_client.get_schedule_handle(f"campaign-schedule:{cid}")
    assert not (await handle.describe()).schedule.state.paused

    r = await api.post(f"/v1/campaigns/{cid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text
    assert (await handle.describe()).schedule.state.paused
    # An occurrence started anyway (triggered by hand) while the campaign is paused is skipped: no run is opened.
    await handle.trigger()
    recent = []
    for _ in range(300):
        recent = (await handle.describe()).info.recent_actions
        if recent:
            break
        await asyncio.sleep(0.1)
    assert recent, "the triggered occurrence never started"
    started = recent[0].action
    progress = await temporal_client.get_workflow_handle(
        started.workflow_id, result_type=CampaignProgress).result()  # type: ignore[attr-defined]
    assert progress.skipped and progress.total == 0
    assert (await api.get(f"/v1/campaigns/{cid}")).json()["run"] is None

    r = await api.post(f"/v1/campaigns/{cid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
    assert not (await handle.describe()).schedule.state.paused

    r = await api.post(f"/v1/campaigns/{cid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert await _gone(temporal_client, f"campaign-schedule:{cid}")
