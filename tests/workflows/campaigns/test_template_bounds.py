"""A recipient whose data makes the template explode fails alone, with the bound as its reason; the batch is sent."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from nudge.embedded import MailSink
from store.campaigns.models import Delivery

# Innocent for the sample contact (and so saved), explosive for a contact with the wrong traits.
BODY = ("Hi {{ contact.first_name }}"
        "{% for i in range(contact.cheers | default(1)) %}!{% endfor %}"
        "{{ lipsum(contact.paragraphs | default(0), html=False) }}")
TRAITS = {
    "ok-0": {"first_name": "Ada"},
    "ok-1": {"first_name": "Grace", "cheers": 3},
    "range": {"first_name": "Range", "cheers": 10**9},      # a range past 10,000 items
    "cpu": {"first_name": "Cpu", "paragraphs": 200_000},    # more than 1 s of CPU
    "ok-2": {"first_name": "Alan"},
    "size": {"first_name": "Size", "cheers": 9_999},        # a subject past 262,144 characters
}


async def test_a_recipient_whose_traits_explode_the_render_fails_alone(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], worker: None, mail_sink: MailSink,
) -> None:
    ids = {}
    for tag, traits in TRAITS.items():
        r = await api.post("/v1/contacts", json={"user_id": f"bound-{tag}", "email": f"bound-{tag}@example.com",
                                                  "traits": traits})
        ids[tag] = r.json()["id"]
    r = await api.post("/v1/campaigns", json={
        "name": "Bounded", "subject": "{{ ('x' * 100) * (contact.cheers | default(1)) }}", "body": BODY,
        "audience": {"contact_ids": list(ids.values())},
    })
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202

    for _ in range(600):
        campaign = (await api.get(f"/v1/campaigns/{cid}")).json()
        if campaign["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert campaign["status"] == "completed", campaign
    assert (campaign["run"]["sent"], campaign["run"]["failed"]) == (3, 3)

    async with sessions() as s:
        rows = (await s.execute(select(Delivery.contact_id, Delivery.status, Delivery.error)
                                .where(Delivery.campaign_id == cid))).all()
    outcome = {tag: next((status, error) for contact, status, error in rows if contact == ids[tag]) for tag in ids}
    assert {tag: status for tag, (status, _) in outcome.items()} == {
        "ok-0": "sent", "ok-1": "sent", "ok-2": "sent", "range": "failed", "cpu": "failed", "size": "failed"}
    assert "body: the template uses a range longer than 10,000 items" in outcome["range"][1]
    assert "subject: the template builds a string longer than 1,000,000 characters" in outcome["range"][1]
    assert outcome["cpu"][1] == "body: the template took more than 1 s of CPU time"
    assert outcome["size"][1] == "subject: the template renders more than 262,144 characters"

    inbox = {str(m["To"]): m for m in mail_sink.messages() if str(m["To"]).startswith("bound-")}
    assert sorted(inbox) == ["bound-ok-0@example.com", "bound-ok-1@example.com", "bound-ok-2@example.com"]
    assert "Hi Grace!!!" in inbox["bound-ok-1@example.com"].get_content()
