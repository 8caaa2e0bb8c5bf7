"""Recurrence and local-time fields through the real API: a bad cron, zone, interval or local time is a 422 naming
the field and changes nothing (no campaign on create; on launch the campaign stays a draft with no run and no
schedule); good ones are stored and shown, and GET lists the runs."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.service import RPCError

from store.campaigns.models import Campaign, CampaignRun, Transition


async def _counts(sessions: async_sessionmaker[AsyncSession]) -> tuple[int, int, int]:
    async with sessions() as s:
        return tuple([await s.scalar(select(func.count()).select_from(m)) or 0  # type: ignore[return-value]
                      for m in (Campaign, CampaignRun, Transition)])


async def _contact(api: httpx.AsyncClient, tag: str) -> int:
    tag = "".join(c if c.isalnum() else "-" for c in tag)
    r = await api.post("/v1/contacts", json={"user_id": tag, "email": f"{tag}@example.com"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


BAD = [
    ({"recurrence": {"cron": "0 9 * *"}}, "recurrence.cron", "five fields"),
    ({"recurrence": {"cron": "0 25 * * *"}}, "recurrence.cron", "hour '25'"),
    ({"recurrence": {"cron": "0 9 1 * MON"}}, "recurrence.cron", "restrict one of them"),
    ({"recurrence": {"cron": "0 9 * * *", "timezone": "Mars/Base"}}, "recurrence.timezone", "unknown time zone"),
    ({"recurrence": {"every": "PT5M"}}, "recurrence.every", "one hour"),
    ({"recurrence": {"cron": "@daily", "every": "P1D"}}, "recurrence", "either `cron` or `every`"),
    ({"recurrence": {"timezone": "UTC"}}, "recurrence", "either `cron` or `every`"),
    ({"recurrence": {"cron": "@daily", "until": "2027-01-01T00:00:00"}}, "recurrence.until", "zone offset"),
    ({"local_time": "9am"}, "local_time", "HH:MM"),
    ({"local_time": "24:00"}, "local_time", "HH:MM"),
    ({"timezone": "Europe/Atlantis"}, "timezone", "unknown time zone"),
]


@pytest.mark.parametrize(("patch", "field", "says"), BAD)
async def test_bad_timing_on_create_is_422_naming_the_field_and_creates_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], patch: dict, field: str, says: str,
) -> None:
    contact = await _contact(api, f"timing-create-{field}-{says[:6]}")
    before = await _counts(sessions)
    r = await api.post("/v1/campaigns", json={"name": "t", "subject": "s", "body": "b",
                                              "audience": {"contact_ids": [contact]}, **patch})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    errors = r.json()["errors"]
    assert any(e["field"] == field and says in e["message"] for e in errors), errors
    assert await _counts(sessions) == before


@pytest.mark.parametrize(("patch", "field", "says"), BAD)
async def test_bad_timing_on_launch_is_422_naming_the_field_and_changes_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], temporal_client: Client, patch: dict,
    field: str, says: str,
) -> None:
    contact = await _contact(api, f"timing-launch-{field}-{says[:6]}")
    cid = (await api.post("/v1/campaigns", json={"name": "t", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    before = await _counts(sessions)
    r = await api.post(f"/v1/campaigns/{cid}/launch", json=patch)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert any(e["field"] == field and says in e["message"] for e in r.json()["errors"]), r.json()
    assert await _counts(sessions) == before
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert (body["status"], body["recurrence"], body["local_time"], body["run"]) == ("draft", None, None, None)
    with pytest.raises(RPCError):
        await temporal_client.get_schedule_handle(f"campaign-schedule:{cid}").describe()


async def test_timing_is_stored_and_shown_and_runs_are_listed(api: httpx.AsyncClient, worker: None) -> None:
    contact = await _contact(api, "timing-shown")
    r = await api.post("/v1/campaigns", json={
        "name": "Mornings", "subject": "s", "body": "b", "audience": {"contact_ids": [contact]},
        "local_time": "7:30", "timezone": "Europe/Paris",
        "recurrence": {"cron": "0 6 * * mon", "timezone": "Europe/Paris", "until": "2027-06-30T00:00:00+02:00"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["local_time"], body["timezone"]) == ("07:30", "Europe/Paris")
    assert body["recurrence"] | {"schedule_id": None} == {
        "cron": "0 6 * * mon", "every_seconds": None, "timezone": "Europe/Paris", "start": None,
        "until": "2027-06-30T00:00:00+02:00", "schedule_id": None}
    assert body["recurrence"]["schedule_id"] == f"campaign-schedule:{body['id']}"

    # A one-off campaign's GET lists its run with its counts.
    cid = (await api.post("/v1/campaigns", json={"name": "Once", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    for _ in range(600):
        got = (await api.get(f"/v1/campaigns/{cid}")).json()
        if got["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert [(r["number"], r["status"], r["total"], r["sent"]) for r in got["runs"]] == [(1, "completed", 1, 1)]


async def test_a_recurrence_launched_at_a_time_starts_then(api: httpx.AsyncClient, temporal_client: Client) -> None:
    contact = await _contact(api, "timing-at")
    cid = (await api.post("/v1/campaigns", json={"name": "Later", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": [contact]}})).json()["id"]
    at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).astimezone(timezone(timedelta(hours=8)))
    r = await api.post(f"/v1/campaigns/{cid}/launch", json={"at": at.isoformat(), "recurrence": {"every": "P1D"}})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "scheduled"
    assert datetime.fromisoformat(r.json()["recurrence"]["start"]) == at
    spec = (await temporal_client.get_schedule_handle(f"campaign-schedule:{cid}").describe()).schedule.spec
    assert spec.start_at == at
    assert (await api.post(f"/v1/campaigns/{cid}/cancel")).json()["status"] == "cancelled"
