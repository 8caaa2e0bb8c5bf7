"""Contacts as ingest leaves them: filters, keyset pages, updates and the right to erasure."""

from __future__ import annotations

import uuid

import httpx
import orjson


def _tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_list_filters_by_traits_and_pages_by_id(ingest: httpx.AsyncClient, api: httpx.AsyncClient) -> None:
    plan = f"plan-{_tag()}"
    batch = {"batch": [{"type": "identify", "userId": f"{plan}-{i}", "traits": {"plan": plan, "n": i}}
                       for i in range(5)]}
    assert (await ingest.post("/v1/batch", json=batch)).status_code == 200
    seen, after = [], 0
    while True:
        page = (await api.get("/v1/contacts", params={"traits": orjson.dumps({"plan": plan}).decode(),
                                                      "limit": 2, "after": after})).json()
        seen += [c["traits"]["n"] for c in page["items"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert sorted(seen) == [0, 1, 2, 3, 4]
    bad = await api.get("/v1/contacts", params={"identity": "shoe_size:42"})
    assert bad.status_code == 400


async def test_patch_merges_traits_and_removes_unset_ones(api: httpx.AsyncClient) -> None:
    created = (await api.post("/v1/contacts", json={"user_id": f"p-{_tag()}", "traits": {"a": 1, "b": 2}})).json()
    r = await api.patch(f"/v1/contacts/{created['id']}", json={"traits": {"c": 3}, "unset_traits": ["a"],
                                                               "timezone": "Asia/Shanghai"})
    assert r.status_code == 200, r.text
    assert r.json()["traits"] == {"b": 2, "c": 3} and r.json()["timezone"] == "Asia/Shanghai"
    assert (await api.patch("/v1/contacts/999999999", json={"traits": {}})).status_code == 404


async def test_erasure_removes_personal_data_identities_events_and_aggregates(
        ingest: httpx.AsyncClient, api: httpx.AsyncClient, sessions) -> None:
    from sqlalchemy import text

    user, anon = f"e-{_tag()}", f"a-{_tag()}"
    batch = {"batch": [
        {"type": "identify", "userId": user, "anonymousId": anon, "traits": {"email": f"{user}@example.com"},
         "messageId": f"{user}-1"},
        {"type": "track", "userId": user, "event": "order_paid", "messageId": f"{user}-2"},
    ]}
    assert (await ingest.post("/v1/batch", json=batch)).status_code == 200
    contact = (await api.get("/v1/contacts", params={"user_id": user})).json()["items"][0]
    detail = (await api.get(f"/v1/contacts/{contact['id']}")).json()
    assert {i["kind"] for i in detail["identities"]} == {"user_id", "anonymous_id", "email"}

    assert (await api.delete(f"/v1/contacts/{contact['id']}")).status_code == 204
    assert (await api.get(f"/v1/contacts/{contact['id']}")).status_code == 404
    async with sessions() as s:
        left = (await s.execute(text("""
            SELECT (SELECT count(*) FROM events WHERE contact_id = :c),
                   (SELECT count(*) FROM contact_event_daily WHERE contact_id = :c),
                   (SELECT count(*) FROM identities WHERE contact_id = :c OR value IN (:u, :a, :e))
        """), {"c": contact["id"], "u": user, "a": anon, "e": f"{user}@example.com"})).one()
    assert tuple(left) == (0, 0, 0)
    # A client retrying the old batch does not bring the person back.
    assert (await ingest.post("/v1/batch", json=batch)).json()["inserted"] == 0
    assert (await api.get("/v1/contacts", params={"user_id": user})).json()["items"] == []
    assert (await api.delete(f"/v1/contacts/{contact['id']}")).status_code == 404
