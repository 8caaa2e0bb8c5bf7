"""A campaign with a WeChat → SMS fallback chain, through the delivery service and the provider simulators; the
preview endpoint."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from channels.simulators import Simulators
from store.db import transaction

CHAIN = {
    "chain": ["wechat", "sms"], "subject": "-", "body": "-",
    "content": {"wechat": {"template_id": "tpl-shipped",
                           "fields": {"first": "{{ contact.first_name | default('Hi') }}, parcel on its way"}},
                "sms": {"text": "{{ contact.first_name | default('Hi') }}, your parcel is on its way."}},
}


async def _person(sessions: async_sessionmaker[AsyncSession], openid_prefix: str, name: str) -> int:
    tag = uuid.uuid4().hex[:10]
    phone = "+861" + str(int(tag, 16))[-9:].rjust(9, "1") + "1"
    async with transaction(sessions) as s:
        return int(await s.scalar(text("""
            INSERT INTO contacts (user_id, email, phone, traits)
            VALUES (:u, :e, :p, jsonb_build_object('wechat_openid', CAST(:o AS text), 'first_name', CAST(:n AS text)))
            RETURNING id"""), {"u": f"chain-{tag}", "e": f"{tag}@example.com", "p": phone,
                               "o": f"{openid_prefix}{tag}", "n": name}))


async def test_wechat_failure_falls_back_to_sms_and_is_counted_per_channel(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], simulators: Simulators, worker: None,
) -> None:
    reached = await _person(sessions, "ok-", "Wei")
    unreachable = await _person(sessions, "unreachable-", "Li")
    r = await api.post("/v1/campaigns", json={"name": "Shipped", **CHAIN,
                                              "audience": {"contact_ids": [reached, unreachable]}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["chain"] == ["wechat", "sms"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    body: dict = {}
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    run = body["run"]
    assert (run["sent"], run["failed"], run["queued"]) == (2, 0, 0), run
    assert run["channels"]["wechat"].get("failed") == 1
    assert sum(run["channels"]["sms"].values()) == 1  # only the unreachable one fell back
    async with sessions() as s:
        channels = dict((await s.execute(text(
            "SELECT contact_id, channel FROM deliveries WHERE campaign_id = :c"), {"c": cid})).all())
        attempts = (await s.execute(text(
            "SELECT contact_id, channel FROM delivery_attempts WHERE key LIKE :k ORDER BY contact_id, attempt"),
            {"k": f"delivery:{cid}:%"})).all()
    assert channels == {reached: "wechat", unreachable: "sms"}
    assert attempts == [(reached, "wechat"), (unreachable, "wechat"), (unreachable, "sms")]


async def test_preview_renders_a_channel_for_a_contact(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    person = await _person(sessions, "ok-", "Mei")
    cid = (await api.post("/v1/campaigns", json={"name": "Preview", **CHAIN,
                                                 "audience": {"contact_ids": [person]}})).json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/preview", json={"contact_id": person, "channel": "sms"})
    assert r.status_code == 200, r.text
    assert r.json()["content"] == {"text": "Mei, your parcel is on its way."}
    wechat = (await api.post(f"/v1/campaigns/{cid}/preview", json={"contact_id": person, "channel": "wechat"})).json()
    assert wechat["content"]["data"] == {"template_id": "tpl-shipped", "fields": {"first": "Mei, parcel on its way"}}
    r = await api.post(f"/v1/campaigns/{cid}/preview", json={"contact_id": person, "channel": "push"})
    assert r.status_code == 422 and "not in this campaign's chain" in r.json()["detail"]


async def test_chain_without_content_for_a_channel_is_refused(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/campaigns", json={**CHAIN, "name": "x", "content": {"sms": CHAIN["content"]["sms"]},
                                              "audience": {"contact_ids": [1]}})
    assert r.status_code == 422 and "content.wechat" in r.text
