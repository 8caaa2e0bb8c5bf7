"""Editing and deleting segments through the real HTTP API: a new rule re-materialises membership (and the
segments built on it) with exit/enter events; bad edits and refused deletes change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


def _tag() -> str:
    return f"seg-edit-{uuid.uuid4().hex[:8]}"


async def _contacts(api: httpx.AsyncClient, tag: str, plans: list[str]) -> list[int]:
    ids = []
    for i, plan in enumerate(plans):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "traits": {"tag": tag, "plan": plan}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def _plan(tag: str, plan: str) -> dict[str, Any]:
    return {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                    {"field": "traits.plan", "op": "eq", "value": plan}]}


async def _members(api: httpx.AsyncClient, sid: int) -> list[int]:
    r = await api.get(f"/v1/segments/{sid}/members", params={"limit": 1000})
    assert r.status_code == 200, r.text
    return [m["contact_id"] for m in r.json()["items"]]


async def _segment_events(sessions: async_sessionmaker[AsyncSession], sid: int) -> list[tuple[int, str]]:
    """In the order they happened (event ids come from per-connection sequence caches, so not by id)."""
    async with sessions() as s:
        rows = await s.execute(text("""
            SELECT contact_id, event FROM events
            WHERE type = 'track' AND event IN ('segment_entered', 'segment_exited')
              AND properties @> CAST(:p AS jsonb)
            ORDER BY timestamp, contact_id, event"""), {"p": f'{{"segment_id": {sid}}}'})
        return [(r.contact_id, r.event) for r in rows]


def _problem(r: httpx.Response, status: int, *needles: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    for needle in needles:
        assert needle in r.json()["detail"], r.json()["detail"]


async def test_a_new_rule_moves_members_and_the_segments_built_on_it(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    pro, free = await _contacts(api, tag, ["pro", "free"])
    base = (await api.post("/v1/segments", json={"name": f"{tag} pros", "kind": "rule",
                                                 "rule": _plan(tag, "pro")})).json()
    built = (await api.post("/v1/segments", json={"name": f"{tag} on base", "kind": "rule",
                                                  "rule": {"segment": base["id"]}})).json()
    assert await _members(api, base["id"]) == [pro] and await _members(api, built["id"]) == [pro]

    r = await api.patch(f"/v1/segments/{base['id']}", json={"name": f"{tag} frees", "rule": _plan(tag, "free")})
    assert r.status_code == 200, r.text
    assert r.json()["name"] == f"{tag} frees" and r.json()["rule"] == _plan(tag, "free")
    assert r.json()["member_count"] == 1
    assert await _members(api, base["id"]) == [free]
    assert await _members(api, built["id"]) == [free], "segments naming the edited one follow at once"
    assert await _segment_events(sessions, base["id"]) == [
        (pro, "segment_entered"), (pro, "segment_exited"), (free, "segment_entered")]
    assert await _segment_events(sessions, built["id"]) == [
        (pro, "segment_entered"), (pro, "segment_exited"), (free, "segment_entered")]

    # Name and description alone change no membership; `description: null` clears it.
    r = await api.patch(f"/v1/segments/{base['id']}", json={"description": "customers on the free plan"})
    assert r.status_code == 200 and r.json()["description"] == "customers on the free plan"
    r = await api.patch(f"/v1/segments/{base['id']}", json={"description": None})
    assert r.status_code == 200 and r.json()["description"] is None and r.json()["name"] == f"{tag} frees"
    assert len(await _segment_events(sessions, base["id"])) == 3

    # A time-based rule is marked as such (the periodic refresh keeps it fresh).
    timed = {"and": [_plan(tag, "free"), {"field": "created_at", "op": "within_last", "value": "30d"}]}
    r = await api.patch(f"/v1/segments/{base['id']}", json={"rule": timed})
    assert r.status_code == 200 and r.json()["time_based"] and r.json()["member_count"] == 1


async def test_bad_edits_are_refused_and_change_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    pro, _ = await _contacts(api, tag, ["pro", "free"])
    a = (await api.post("/v1/segments", json={"name": f"{tag} a", "kind": "rule", "rule": _plan(tag, "pro")})).json()
    b = (await api.post("/v1/segments", json={"name": f"{tag} b", "kind": "rule", "rule": {"segment": a["id"]}})).json()
    manual = (await api.post("/v1/segments", json={"name": f"{tag} list", "kind": "manual",
                                                   "contact_ids": [pro]})).json()
    before = {s["id"]: s for s in [(await api.get(f"/v1/segments/{x['id']}")).json() for x in (a, b, manual)]}

    _problem(await api.patch("/v1/segments/987654321", json={"name": "x"}), 404, "Segment 987654321 does not exist")
    cases: list[tuple[int, dict[str, Any], str]] = [
        (a["id"], {"name": "renamed", "rule": {"field": "traits.plan", "op": "like", "value": "pro"}},
         'unknown operator "like"'),
        (a["id"], {"rule": {"event": "order_paid", "where_cel": "event.properties.amount >> 1"}}, "CEL syntax error"),
        (a["id"], {"rule": {"segment": 987654321}}, "segment(s) 987654321 do not exist"),
        (a["id"], {"rule": {"segment": b["id"]}}, "cycle"),
        (a["id"], {"rule": {"segment": a["id"]}}, "cycle"),
        (a["id"], {"rule": {"event": "segment_entered"}}, "emitted by Nudge itself"),
        (a["id"], {"rule": None}, "a rule segment needs a rule"),
        (a["id"], {"name": None}, "a segment needs a name"),
        (a["id"], {}, "at least one of name, description, rule"),
        (a["id"], {"kind": "manual"}, "kind"),
        (a["id"], {"name": ""}, "name"),
        (manual["id"], {"rule": _plan(tag, "pro")}, "manual segment"),
    ]
    for sid, body, needle in cases:
        _problem(await api.patch(f"/v1/segments/{sid}", json=body), 422, needle)
    after = {s["id"]: s for s in [(await api.get(f"/v1/segments/{x['id']}")).json() for x in (a, b, manual)]}
    assert after == before
    assert await _segment_events(sessions, a["id"]) == [(pro, "segment_entered")]


async def test_delete_refuses_while_named_then_members_exit(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    pro, other = await _contacts(api, tag, ["pro", "pro"])
    base = (await api.post("/v1/segments", json={"name": f"{tag} base", "kind": "rule",
                                                 "rule": _plan(tag, "pro")})).json()
    user = (await api.post("/v1/segments", json={"name": f"{tag} user", "kind": "rule",
                                                 "rule": {"and": [{"field": "traits.tag", "op": "eq", "value": tag},
                                                                  {"not": {"segment": base["id"]}}]}})).json()

    _problem(await api.delete("/v1/segments/987654321"), 404, "Segment 987654321 does not exist")
    r = await api.delete(f"/v1/segments/{base['id']}")
    _problem(r, 409, f"Segment {base['id']} is used by", f"{user['id']} ('{tag} user')")
    assert (await api.get(f"/v1/segments/{base['id']}")).json()["member_count"] == 2
    assert await _segment_events(sessions, base["id"]) == [(pro, "segment_entered"), (other, "segment_entered")]

    r = await api.delete(f"/v1/segments/{user['id']}")
    assert r.status_code == 200 and r.json() == {"id": user["id"], "exited": 0}
    r = await api.delete(f"/v1/segments/{base['id']}")
    assert r.status_code == 200, r.text
    assert r.json() == {"id": base["id"], "exited": 2}
    _problem(await api.get(f"/v1/segments/{base['id']}"), 404, "does not exist")
    _problem(await api.delete(f"/v1/segments/{base['id']}"), 404, "does not exist")
    _problem(await api.patch(f"/v1/segments/{base['id']}", json={"name": "x"}), 404, "does not exist")
    assert await _segment_events(sessions, base["id"]) == [
        (pro, "segment_entered"), (other, "segment_entered"), (pro, "segment_exited"), (other, "segment_exited")]
    async with sessions() as s:
        left = await s.scalar(text("SELECT count(*) FROM segment_members WHERE segment_id = :s"), {"s": base["id"]})
        history = await s.scalar(text("SELECT count(*) FROM segment_transitions WHERE segment_id = :s"),
                                 {"s": base["id"]})
    assert left == 0 and history == 4, "membership goes with the segment; its history stays until pruned"
    # The deleted segment can no longer be named by a rule.
    _problem(await api.post("/v1/segments", json={"name": "x", "rule": {"segment": base["id"]}}), 422, "do not exist")


async def test_manual_segments_are_renamed_and_deleted_and_keep_their_members_api(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = _tag()
    ids = await _contacts(api, tag, ["a", "b", "c"])
    sid = (await api.post("/v1/segments", json={"name": f"{tag} list", "kind": "manual",
                                                "contact_ids": ids[:2]})).json()["id"]
    r = await api.patch(f"/v1/segments/{sid}", json={"name": f"{tag} renamed", "description": "hand-picked"})
    assert r.status_code == 200 and r.json()["kind"] == "manual" and r.json()["member_count"] == 2
    assert (await api.post(f"/v1/segments/{sid}/members", json={"contact_ids": [ids[2]]})).json()["changed"] == 1
    assert (await api.post(f"/v1/segments/{sid}/members/remove", json={"contact_ids": [ids[0]]})).json()["changed"] == 1
    async with sessions() as s:
        names = (await s.scalars(text("""SELECT DISTINCT properties->>'segment_name' FROM events
            WHERE properties @> CAST(:p AS jsonb)"""), {"p": f'{{"segment_id": {sid}}}'})).all()
    assert set(names) == {f"{tag} list", f"{tag} renamed"}, "each event carries the name the segment had then"
    r = await api.delete(f"/v1/segments/{sid}")
    assert r.json() == {"id": sid, "exited": 2}
    assert sorted(c for c, kind in await _segment_events(sessions, sid) if kind == "segment_exited") == ids
