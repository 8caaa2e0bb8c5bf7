"""How a recurring campaign's occurrences end, through the real API, Temporal Schedule and worker: an occurrence whose
recipients lack a template variable sends nothing, fails with the reason and the campaign waits for the next one;
the campaign's last occurrence (by its `until`) deletes the finished schedule; cancelling an occurrence's workflow in
Temporal (as the Temporal UI does) cancels the campaign and deletes its schedule."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleHandle
from temporalio.service import RPCError, RPCStatusCode

from nudge.embedded import MailSink
from workflows.campaigns import CampaignProgress, CampaignWorkflow


async def _contacts(api: httpx.AsyncClient, tag: str, n: int, traits: dict | None = None) -> list[int]:
    ids = []
    for i in range(n):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com",
                                                 "traits": traits or {}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def _until(api: httpx.AsyncClient, cid: int, done: Callable[[dict], bool], tries: int = 600) -> dict:
    body: dict = {}
    for _ in range(tries):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if done(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {cid} never got there: {body}")


async def _gone(client: Client, schedule_id: str, tries: int = 300) -> bool:
    for _ in range(tries):
        try:
            await client.get_schedule_handle(schedule_id).describe()
        except RPCError as exc:
            return exc.status == RPCStatusCode.NOT_FOUND
        await asyncio.sleep(0.1)
    return False


async def _triggered(handle: ScheduleHandle) -> str:
    """Start an occurrence now; its workflow id. The schedule names an occurrence's workflow by its time to the
    second, so two triggers within one second are one occurrence: wait for the next second first."""
    recent = (await handle.describe()).info.recent_actions
    before = {a.action.workflow_id for a in recent}  # type: ignore[attr-defined]
    if recent:
        last = max(a.scheduled_at for a in recent).replace(microsecond=0)
        while datetime.now(UTC).replace(microsecond=0) <= last:
            await asyncio.sleep(0.05)
    await handle.trigger()
    for _ in range(300):
        started = {a.action.workflow_id  # type: ignore[attr-defined]
                   for a in (await handle.describe()).info.recent_actions} - before
        if started:
            return started.pop()
        await asyncio.sleep(0.1)
    raise AssertionError("the triggered occurrence never started")


def _far_cron() -> str:
    """A daily UTC time twelve hours away: the schedule never fires by itself during a test."""
    at = datetime.now(UTC) + timedelta(hours=12)
    return f"{at.minute} {at.hour} * * *"


async def test_an_occurrence_whose_recipients_lack_a_variable_sends_nothing_and_the_next_one_sends(
    api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
    mail_sink: MailSink,
) -> None:
    ids = await _contacts(api, "occ-var", 3, {"first_name": "Kim"})
    r = await api.post("/v1/campaigns", json={
        "name": "Weekly hello", "subject": "Hi {{ contact.first_name }}", "body": "b",
        "audience": {"contact_ids": ids}, "recurrence": {"cron": _far_cron(), "timezone": "UTC"}})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text  # everyone has it at launch
    async with sessions() as s, s.begin():  # then one of them loses it before the occurrence
        await s.execute(text("UPDATE contacts SET traits = traits - 'first_name' WHERE id = :id"), {"id": ids[1]})
    handle = temporal_client.get_schedule_handle(f"campaign-schedule:{cid}")

    workflow_id = await _triggered(handle)
    progress = await temporal_client.get_workflow_handle(workflow_id, result_type=CampaignProgress).result()
    assert progress.refused is not None and progress.sent == 0
    body = await _until(api, cid, lambda b: b["run"] is not None and b["run"]["finished_at"] is not None)
    run = body["run"]
    assert body["status"] == "scheduled" and run["status"] == "failed"
    assert run["error"].startswith("email.subject uses contact.first_name, which 1 of the 3 recipients do not have "
                                   f"(contact {ids[1]})."), run["error"]
    assert (run["total"], run["sent"], run["failed"], run["queued"]) == (3, 0, 3, 0)
    async with sessions() as s:
        errors = set((await s.scalars(text("SELECT error FROM deliveries WHERE campaign_id = :c"), {"c": cid})).all())
    assert errors == {f"not sent: {run['error']}"}
    assert not [m for m in mail_sink.messages() if str(m["To"]).startswith("occ-var-")]
    moves = (await api.get(f"/v1/campaigns/{cid}/transitions")).json()
    assert [(m["from_status"], m["to_status"]) for m in moves] == [
        ("draft", "scheduled"), ("scheduled", "running"), ("running", "scheduled")]
    assert moves[-1]["note"] == f"run 1 not sent: {run['error']}"
    assert not (await handle.describe()).schedule.state.paused  # the schedule goes on

    # Filled in again: the next occurrence is checked afresh and sends.
    async with sessions() as s, s.begin():
        await s.execute(text("UPDATE contacts SET traits = traits || '{\"first_name\": \"Lee\"}' WHERE id = :id"),
                        {"id": ids[1]})
    workflow_id = await _triggered(handle)
    progress = await temporal_client.get_workflow_handle(workflow_id, result_type=CampaignProgress).result()
    assert progress.refused is None and progress.sent == 3
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "scheduled" and [(r["number"], r["status"], r["error"]) for r in body["runs"]] == [
        (2, "completed", None), (1, "failed", run["error"])]
    assert sorted(str(m["To"]) for m in mail_sink.messages() if str(m["To"]).startswith("occ-var-")) == [
        f"occ-var-{i}@example.com" for i in range(3)]
    await api.post(f"/v1/campaigns/{cid}/cancel")


async def test_the_last_occurrence_by_until_completes_the_campaign_and_deletes_its_schedule(
    api: httpx.AsyncClient, worker: None, temporal_client: Client,
) -> None:
    ids = await _contacts(api, "occ-until", 2)
    until = (datetime.now(UTC) + timedelta(hours=1)).isoformat()  # before the cron's next time: this is the last
    r = await api.post("/v1/campaigns", json={
        "name": "Until", "subject": "s", "body": "b", "audience": {"contact_ids": ids},
        "recurrence": {"cron": _far_cron(), "timezone": "UTC", "until": until}})
    cid = r.json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    schedule = f"campaign-schedule:{cid}"
    workflow_id = await _triggered(temporal_client.get_schedule_handle(schedule))
    progress = await temporal_client.get_workflow_handle(workflow_id, result_type=CampaignProgress).result()
    assert progress.sent == 2
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "completed" and body["run"]["status"] == "completed"
    assert await _gone(temporal_client, schedule)


async def test_cancelling_an_occurrence_in_temporal_cancels_the_campaign_and_deletes_its_schedule(
    api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
    mail_sink: MailSink,
) -> None:
    ids = await _contacts(api, "occ-cancel", 2)
    # Each recipient's local time six hours from now: the occurrence waits on a durable timer, where it is cancelled.
    local = (datetime.now(UTC) + timedelta(hours=6)).strftime("%H:%M")
    r = await api.post("/v1/campaigns", json={
        "name": "Cancelled in the UI", "subject": "s", "body": "b", "audience": {"contact_ids": ids},
        "recurrence": {"cron": _far_cron(), "timezone": "UTC"}, "local_time": local, "timezone": "UTC"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    schedule = f"campaign-schedule:{cid}"
    workflow_id = await _triggered(temporal_client.get_schedule_handle(schedule))
    occurrence = temporal_client.get_workflow_handle(workflow_id, result_type=CampaignProgress)
    for _ in range(300):
        planned = await occurrence.query(CampaignWorkflow.progress)
        if planned.slots:
            break
        await asyncio.sleep(0.1)
    assert planned.slots and planned.sent == 0  # waiting for the recipients' local time

    await occurrence.cancel()  # what the Temporal UI's "Request Cancellation" does
    progress = await occurrence.result()
    assert progress.cancelled and progress.sent == 0 and progress.unsent_cancelled == 2
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "cancelled" and body["run"]["status"] == "cancelled"
    assert await _gone(temporal_client, schedule)
    assert not [m for m in mail_sink.messages() if str(m["To"]).startswith("occ-cancel-")]
    async with sessions() as s:
        statuses = (await s.scalars(text("SELECT status FROM deliveries WHERE campaign_id = :c"), {"c": cid})).all()
    assert statuses == ["cancelled", "cancelled"]
