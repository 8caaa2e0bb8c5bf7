"""Segment membership changes are events: `segment_entered` / `segment_exited` on the contact's timeline and
in the event outbox, keyed by business ids, emitted once however often a refresh runs or is retried."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.segments.rules import transition_message_id
from store.db import transaction
from store.events.outbox import OutboxEvent
from store.segments.definitions import create_segment
from store.segments.membership import add_members, remove_members
from store.segments.refresh import refresh_segment


def _tag() -> str:
    return f"seg-ev-{uuid.uuid4().hex[:8]}"


async def _contacts(api: httpx.AsyncClient, tag: str, n: int) -> list[int]:
    ids = []
    for i in range(n):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "traits": {"tag": tag}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _about(segment_id: int) -> Callable[[OutboxEvent], bool]:
    """Outbox events of `segment_id`'s membership changes."""
    return lambda e: e.event in ("segment_entered", "segment_exited") and e.properties.get("segment_id") == segment_id


async def _transitions(sessions: async_sessionmaker[AsyncSession], segment_id: int) -> list[tuple[int, str]]:
    """(transition id, kind) of the segment's committed transitions, oldest first."""
    async with sessions() as s:
        rows = await s.execute(text("SELECT id, kind FROM segment_transitions WHERE segment_id = :s ORDER BY at, id"),
                               {"s": segment_id})
        return [(r.id, r.kind) for r in rows]


async def test_entering_and_leaving_a_rule_segment_are_events_emitted_once(
    api: httpx.AsyncClient, api_url: str, ingest_key: str, segment_consumer: Any,
    sessions: async_sessionmaker[AsyncSession], outbox: Any,
) -> None:
    tag = _tag()
    consumer = f"test-{tag}"
    ids = await _contacts(api, tag, 2)
    rule = {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                    {"event": "order_paid", "where": {"field": "properties.amount", "op": "gt", "value": 100}}]}
    seg = (await api.post("/v1/segments", json={"name": f"{tag} buyers", "kind": "rule", "rule": rule})).json()
    await outbox.start(consumer)
    async with sessions() as s:
        seen_before = await s.scalar(text("SELECT last_seen_at FROM contacts WHERE id = :c"), {"c": ids[0]})

    async with httpx.AsyncClient(base_url=api_url, auth=(ingest_key, "")) as ingest:
        r = await ingest.post("/v1/track", json={"userId": f"{tag}-0", "event": "order_paid",
                                                 "properties": {"amount": 150}, "messageId": f"{tag}-m1",
                                                 "timestamp": "2024-05-01T10:00:00Z"})
        assert r.status_code == 200, r.text
    await segment_consumer.caught_up()  # the deployment's long-lived consumer

    # Entered: one event for the outbox's consumers, keyed by the transition it records.
    [entered] = await outbox.drain(consumer, _about(seg["id"]), 1)
    [(transition_id, _)] = await _transitions(sessions, seg["id"])
    assert (entered.contact_id, entered.type, entered.event) == (ids[0], "track", "segment_entered")
    assert entered.properties == {"segment_id": seg["id"], "segment_name": f"{tag} buyers"}
    assert entered.message_id == transition_message_id(seg["id"], ids[0], "segment_entered",
                                                       transition_id)
    assert entered.message_id.startswith(f"segment:{seg['id']}:{ids[0]}:entered:")
    # ... and on the contact's timeline, after the order that caused it.
    timeline = (await api.get(f"/v1/contacts/{ids[0]}/events")).json()["items"]
    assert sorted((e["event"], e["message_id"]) for e in timeline) == [
        ("order_paid", f"{tag}-m1"), ("segment_entered", entered.message_id)]
    # A system event is not the contact's activity: no daily aggregate, last seen stays the order's time.
    async with sessions() as s:
        daily = await s.scalar(text("SELECT count(*) FROM contact_event_daily WHERE contact_id = :c"
                                    " AND event LIKE 'segment_%'"), {"c": ids[0]})
        seen = await s.scalar(text("SELECT last_seen_at FROM contacts WHERE id = :c"), {"c": ids[0]})
    assert daily == 0
    assert seen_before is None and seen == datetime(2024, 5, 1, 10, tzinfo=UTC)

    # Leaving: the trait that qualified the contact changes.
    r = await api.patch(f"/v1/contacts/{ids[0]}", json={"traits": {"tag": f"{tag}-gone"}})
    assert r.status_code == 200, r.text
    r = await api.post(f"/v1/segments/{seg['id']}/refresh")  # the scheduled consumer may have got there first
    assert r.json()["entered"] == 0 and r.json()["exited"] in (0, 1)
    [exited] = await outbox.drain(consumer, _about(seg["id"]), 1)
    assert (exited.contact_id, exited.event) == (ids[0], "segment_exited")
    assert exited.message_id.startswith(f"segment:{seg['id']}:{ids[0]}:exited:")
    timeline = (await api.get(f"/v1/contacts/{ids[0]}/events")).json()["items"]
    assert [(e["message_id"], e["properties"]) for e in timeline if e["event"] == "segment_exited"] == [
        (exited.message_id, {"segment_id": seg["id"], "segment_name": f"{tag} buyers"})]

    # Refreshing again, however often, changes nothing and emits nothing.
    for _ in range(2):
        r = await api.post(f"/v1/segments/{seg['id']}/refresh")
        assert r.json()["entered"] == 0 and r.json()["exited"] == 0
    await segment_consumer.caught_up()
    assert await outbox.drain(consumer, _about(seg["id"])) == []
    assert [kind for _, kind in await _transitions(sessions, seg["id"])] == ["segment_entered", "segment_exited"]


async def test_a_refresh_rolled_back_by_a_crash_emits_its_events_once_when_retried(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], outbox: Any,
) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, 3)
    r = await api.post("/v1/segments", json={"name": tag, "kind": "manual"})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    async with transaction(sessions) as s:  # a rule segment created straight in the store: no refresh yet
        segment = await create_segment(s, name=f"{tag} rule", kind="rule",
                                             rule={"field": "traits.tag", "op": "eq", "value": tag})
    consumer = f"test-{tag}"
    await outbox.start(consumer)

    class Crash(Exception):
        pass

    try:
        async with transaction(sessions) as s:
            changes = await refresh_segment(s, segment, store_now())
            assert changes.entered == 3
            raise Crash
    except Crash:
        pass
    assert await outbox.drain(consumer, _about(segment.id)) == []  # nothing of the crashed run survives

    async with transaction(sessions) as s:
        assert (await refresh_segment(s, segment, store_now())).entered == 3
    async with transaction(sessions) as s:
        assert (await refresh_segment(s, segment, store_now())).entered == 0
    events = await outbox.drain(consumer, _about(segment.id), 3)
    assert sorted(e.contact_id for e in events) == ids and {e.event for e in events} == {"segment_entered"}
    assert len({e.message_id for e in events}) == 3
    async with sessions() as s:
        stored = await s.scalar(text("SELECT count(*) FROM events WHERE contact_id = ANY(:c) AND message_id = ANY(:m)"),
                                {"c": ids, "m": [e.message_id for e in events]})
    assert stored == 3, "each emitted event is stored once under its message id, like an ingested one"
    assert sid  # the manual segment is untouched by the rule segment's refresh
    assert (await api.get(f"/v1/segments/{sid}/count")).json()["count"] == 0


async def test_manual_list_changes_are_events_in_outbox_rows_of_bounded_size(
    sessions: async_sessionmaker[AsyncSession], outbox: Any,
) -> None:
    tag = _tag()
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text(
            "INSERT INTO contacts (user_id, traits) SELECT :tag || '-' || g, '{}' FROM generate_series(1, 2500) g"
            " RETURNING id"), {"tag": tag})).all())
        segment = await create_segment(s, name=f"{tag} list", kind="manual", rule=None)
    consumer = f"test-{tag}"
    await outbox.start(consumer)
    async with transaction(sessions) as s:
        assert await add_members(s, segment, ids, store_now()) == 2500
    async with transaction(sessions) as s:
        assert await add_members(s, segment, ids[:10], store_now()) == 0  # already members: nothing new
        assert await remove_members(s, segment, ids[:10], store_now()) == 10
    async with sessions() as s:
        sizes = (await s.scalars(text("""
            SELECT cardinality(o.event_ids) FROM event_outbox o
            WHERE EXISTS (SELECT 1 FROM events e WHERE e.contact_id = o.contact_ids[1] AND e.id = o.event_ids[1]
                          AND e.properties @> CAST(:p AS jsonb))
            ORDER BY o.xid, o.id"""), {"p": f'{{"segment_id": {segment.id}}}'})).all()
    assert list(sizes) == [1000, 1000, 500, 10], "a consumer reading ~1000 events gets ~1000, not 2500"
    events = await outbox.drain(consumer, _about(segment.id), 2510)
    assert [e.event for e in events].count("segment_entered") == 2500
    assert [(e.contact_id, e.event) for e in events if e.event == "segment_exited"] == [
        (c, "segment_exited") for c in ids[:10]]


def store_now() -> datetime:
    return datetime.now(UTC)


async def test_an_erased_member_leaves_without_an_event(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, 2)
    seg = (await api.post("/v1/segments", json={"name": tag, "kind": "rule",
                                                "rule": {"field": "traits.tag", "op": "eq", "value": tag}})).json()
    assert seg["member_count"] == 2
    assert (await api.delete(f"/v1/contacts/{ids[0]}")).status_code == 204
    r = await api.post(f"/v1/segments/{seg['id']}/refresh")
    assert r.status_code == 200 and r.json()["entered"] == 0
    assert (await api.get(f"/v1/segments/{seg['id']}/members")).json()["items"][0]["contact_id"] == ids[1]
    async with sessions() as s:
        events = await s.scalar(text("SELECT count(*) FROM events WHERE contact_id = :c"), {"c": ids[0]})
    assert events == 0, "erasure is not undone by a segment event"
