"""The walking skeleton through the real API: contacts → campaign → launch → mail in the sink."""

from __future__ import annotations

import asyncio

import httpx

from nudge.embedded import MailSink


async def _contacts(api: httpx.AsyncClient, n: int, tag: str) -> list[int]:
    ids = []
    for i in range(n):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com",
                                                  "traits": {"first_name": f"Name{i}"}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


async def _wait_done(api: httpx.AsyncClient, campaign_id: int, timeout: float = 60) -> dict:
    for _ in range(int(timeout * 10)):
        body = (await api.get(f"/v1/campaigns/{campaign_id}")).json()
        if body["status"] == "completed":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {campaign_id} did not complete: {body}")


async def test_broadcast_reaches_the_inbox_once_per_contact(api: httpx.AsyncClient, worker: None,
                                                            mail_sink: MailSink) -> None:
    ids = await _contacts(api, 7, "skeleton")
    r = await api.post("/v1/campaigns", json={
        "name": "Welcome", "subject": "Hi {{ contact.first_name }}",
        "body": "Hello {{ contact.first_name }}, welcome to {{ campaign.name }}.",
        "audience": {"contact_ids": ids},
    })
    assert r.status_code == 201, r.text
    campaign = r.json()
    assert campaign["status"] == "draft"

    r = await api.post(f"/v1/campaigns/{campaign['id']}/launch")
    assert r.status_code == 202, r.text
    assert r.json()["run"]["workflow_id"] == f"campaign:{campaign['id']}:run:1"

    done = await _wait_done(api, campaign["id"])
    assert done["run"] | {"started_at": None, "finished_at": None} == done["run"] | {
        "total": 7, "sent": 7, "failed": 0, "queued": 0, "status": "completed", "started_at": None, "finished_at": None}

    mine = [m for m in mail_sink.messages() if str(m["To"]).startswith("skeleton-")]
    assert sorted(str(m["To"]) for m in mine) == sorted(f"skeleton-{i}@example.com" for i in range(7))
    first = next(m for m in mine if str(m["To"]) == "skeleton-0@example.com")
    assert first["Subject"] == "Hi Name0"
    assert "Hello Name0, welcome to Welcome." in first.get_content()
    assert first["Message-ID"] == f"<delivery.{campaign['id']}.s1.{ids[0]}@localhost>"


async def test_launching_a_running_or_completed_campaign_is_a_conflict(api: httpx.AsyncClient, worker: None) -> None:
    ids = await _contacts(api, 1, "relaunch")
    cid = (await api.post("/v1/campaigns", json={"name": "Once", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    await _wait_done(api, cid)
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert "completed" in r.json()["detail"]


async def test_sent_messages_are_counted_in_metrics(api: httpx.AsyncClient, anon_api: httpx.AsyncClient,
                                                    worker: None) -> None:
    def sent_total(text: str) -> float:
        line = next((x for x in text.splitlines()
                     if x.startswith('nudge_messages_total{channel="email",outcome="sent"}')), None)
        return float(line.split()[-1]) if line else 0.0

    before = sent_total((await anon_api.get("/metrics")).text)
    ids = await _contacts(api, 2, "metrics")
    cid = (await api.post("/v1/campaigns", json={"name": "Metered", "subject": "s", "body": "b",
                                                 "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    await _wait_done(api, cid)
    assert sent_total((await anon_api.get("/metrics")).text) == before + 2


async def test_list_shows_each_campaigns_latest_run(api: httpx.AsyncClient, worker: None) -> None:
    ids = await _contacts(api, 2, "listing")
    launched = (await api.post("/v1/campaigns", json={"name": "Listed launched", "subject": "s", "body": "b",
                                                      "audience": {"contact_ids": ids}})).json()["id"]
    draft = (await api.post("/v1/campaigns", json={"name": "Listed draft", "subject": "s", "body": "b",
                                                   "audience": {"contact_ids": ids}})).json()["id"]
    await api.post(f"/v1/campaigns/{launched}/launch")
    await _wait_done(api, launched)
    listed = {c["id"]: c for c in (await api.get("/v1/campaigns", params={"after": launched - 1})).json()}
    assert listed[launched]["run"]["sent"] == 2 and listed[launched]["run"]["number"] == 1
    assert listed[draft]["run"] is None and listed[draft]["status"] == "draft"
