"""Segment audiences snapshotted at launch: exclusions, suppressions and unsubscribes; variants and holdout."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.campaigns import Variant, assign
from nudge.embedded import MailSink
from store.db import transaction


async def _contacts(sessions: async_sessionmaker[AsyncSession], tag: str, n: int) -> list[int]:
    async with sessions() as s, s.begin():
        return list((await s.scalars(text(
            "INSERT INTO contacts (user_id, email) SELECT :tag || i, :tag || i || '@example.com' "
            "FROM generate_series(1, :n) i RETURNING id"), {"tag": tag, "n": n})).all())


async def _segment(api: httpx.AsyncClient, name: str, ids: list[int]) -> int:
    r = await api.post("/v1/segments", json={"name": name, "kind": "manual", "contact_ids": ids})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _wait(api: httpx.AsyncClient, cid: int, status: str) -> dict:
    body: dict = {}
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(body)


async def test_segment_snapshot_leaves_out_exclusions_suppressions_and_unsubscribes(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], mail_sink: MailSink, worker: None,
) -> None:
    ids = await _contacts(sessions, "aud-", 12)
    members = await _segment(api, "Audience members", ids[:10])
    excluded = await _segment(api, "Audience excluded", ids[:2])
    extra = ids[11]  # a manual id beside the segment
    r = await api.post("/v1/suppressions", json={"channel": "email", "address": "AUD-3@example.com",
                                                 "reason": "manual"})
    assert r.status_code in (200, 201), r.text
    r = await api.put(f"/v1/contacts/{ids[3]}/preferences",
                      json={"rules": [{"topic": "*", "channel": "email", "subscribed": False}]})
    assert r.status_code == 200, r.text
    r = await api.post("/v1/campaigns", json={
        "name": "Segmented", "subject": "Hi", "body": "b",
        "audience": {"segment_ids": [members], "exclude_segment_ids": [excluded], "contact_ids": [extra]}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    for _ in range(600):
        if (await api.get(f"/v1/campaigns/{cid}")).json()["run"]["total"]:
            break
        await asyncio.sleep(0.02)
    # Joining the segment once the run has its snapshot changes nothing for the run.
    await api.post(f"/v1/segments/{members}/members", json={"contact_ids": [ids[10]]})
    run = (await _wait(api, cid, "completed"))["run"]
    assert (run["total"], run["sent"], run["suppressed"], run["queued"]) == (9, 7, 2, 0)
    got = sorted(str(m["To"]) for m in mail_sink.messages() if str(m["To"]).startswith("aud-"))
    assert got == sorted(f"aud-{i}@example.com" for i in (5, 6, 7, 8, 9, 10, 12))  # aud-3 suppressed, aud-4 opted out
    async with sessions() as s:
        sent_to = set((await s.scalars(text(
            "SELECT contact_id FROM deliveries WHERE campaign_id = :c AND status = 'sent'"), {"c": cid})).all())
    assert sent_to == {*ids[4:10], extra}


async def test_variants_and_holdout_follow_the_hash_and_are_counted(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], mail_sink: MailSink, worker: None,
) -> None:
    ids = await _contacts(sessions, "ab-", 60)
    r = await api.post("/v1/campaigns", json={
        "name": "A/B", "subject": "A subject", "body": "b", "holdout_percent": 20, "conversion_event": "order_paid",
        "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "subject": "B subject"}],
        "audience": {"contact_ids": ids}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    await api.post(f"/v1/campaigns/{cid}/launch")
    run = (await _wait(api, cid, "completed"))["run"]
    variants = [Variant("a", 1), Variant("b", 1)]
    expected = {c: assign(cid, c, variants, 2000) for c in ids}
    async with sessions() as s:
        recorded = dict((await s.execute(text("SELECT contact_id, variant FROM deliveries WHERE campaign_id = :c"),
                                         {"c": cid})).all())
    assert recorded == expected  # the SQL bucket is the Python one, recipient by recipient
    by_variant = {v["variant"]: v for v in run["variants"]}
    for name in ("a", "b", "holdout"):
        assert by_variant.get(name, {"total": 0})["total"] == sum(g == name for g in expected.values())
    assert run["holdout"] == by_variant.get("holdout", {"holdout": 0})["holdout"]
    assert run["sent"] == 60 - run["holdout"]
    subjects = {str(m["To"]): m["Subject"] for m in mail_sink.messages() if str(m["To"]).startswith("ab-")}
    async with sessions() as s:
        emails = dict((await s.execute(text("SELECT id, email FROM contacts WHERE id = ANY(:ids)"),
                                       {"ids": ids})).all())
    converting = [next(c for c, g in expected.items() if g == "a"), next(c for c, g in expected.items()
                                                                         if g == "holdout")]
    async with transaction(sessions) as s:
        await s.execute(text("""
            INSERT INTO events (contact_id, message_id, type, event, timestamp)
            SELECT c, 'conv-' || c, 'track', 'order_paid', now() FROM unnest(CAST(:ids AS bigint[])) c
        """), {"ids": converting})
    results = {v["variant"]: v for v in (await api.get(f"/v1/campaigns/{cid}")).json()["run"]["variants"]}
    assert (results["a"]["converted"], results["b"]["converted"], results["holdout"]["converted"]) == (1, 0, 1)
    held = results["holdout"]["total"]
    treated = 60 - held
    run = (await api.get(f"/v1/campaigns/{cid}")).json()["run"]
    assert run["holdout_lift"] == pytest.approx(((1 / treated) - (1 / held)) / (1 / held))

    for contact, group in expected.items():
        if group == "holdout":
            assert emails[contact] not in subjects
        else:
            assert subjects[emails[contact]] == ("A subject" if group == "a" else "B subject")


async def test_unknown_segment_is_refused_by_name(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/campaigns", json={"name": "x", "subject": "s", "body": "b",
                                              "audience": {"segment_ids": [987654321]}})
    assert r.status_code == 422 and "audience.segment_ids" in r.json()["detail"]
    r = await api.post("/v1/campaigns", json={"name": "x", "subject": "s", "body": "b", "audience": {}})
    assert r.status_code == 422 and "contact_ids" in r.text
