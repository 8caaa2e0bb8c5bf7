"""The in-app inbox, preferences, suppressions and a contact's deliveries over real HTTP."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.store.channels.conftest import MakeService, make_person, step


async def test_the_app_lists_marks_read_and_deletes_inbox_messages(
        api: httpx.AsyncClient, read_key: str, api_url: str, sessions: async_sessionmaker[AsyncSession],
        make_service: MakeService) -> None:
    person = await make_person(sessions)
    await make_service().send([step(person, ["inbox"]), step(person, ["inbox"])])
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_key}"}) as reader:
        listed = (await reader.get(f"/v1/contacts/{person.id}/inbox")).json()
        assert listed["unread"] == 2 and [m["display"] for m in listed["messages"]] == ["toast", "toast"]
        refused = await reader.post(f"/v1/contacts/{person.id}/inbox/read", json={"ids": None})
        assert refused.status_code == 403
    first = listed["messages"][0]["id"]
    marked = (await api.post(f"/v1/contacts/{person.id}/inbox/read", json={"ids": [first]})).json()
    assert marked == {"marked": 1, "unread": 1}
    assert (await api.delete(f"/v1/contacts/{person.id}/inbox/{first}")).status_code == 204
    assert (await api.delete(f"/v1/contacts/{person.id}/inbox/{first}")).status_code == 404
    left = (await api.get(f"/v1/contacts/{person.id}/inbox")).json()
    assert [m["id"] for m in left["messages"]] == [listed["messages"][1]["id"]] and left["unread"] == 1


async def test_preferences_replace_and_validate(api: httpx.AsyncClient,
                                               sessions: async_sessionmaker[AsyncSession]) -> None:
    person = await make_person(sessions)
    rules = [{"topic": "*", "channel": "sms", "subscribed": False},
             {"topic": "orders", "channel": "*", "subscribed": True}]
    put = await api.put(f"/v1/contacts/{person.id}/preferences", json={"rules": rules})
    assert put.status_code == 200
    got = (await api.get(f"/v1/contacts/{person.id}/preferences")).json()
    assert sorted(got["rules"], key=str) == sorted(rules, key=str)
    bad = await api.put(f"/v1/contacts/{person.id}/preferences",
                        json={"rules": [{"topic": "a b", "channel": "sms", "subscribed": False}]})
    assert bad.status_code == 422 and "topic" in bad.text
    assert (await api.get("/v1/contacts/999999999999/preferences")).status_code == 404


async def test_suppressions_add_list_remove_and_deliveries_show_them(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], make_service: MakeService) -> None:
    person = await make_person(sessions)
    added = await api.post("/v1/suppressions", json={"channel": "email", "address": person.email,
                                                     "contact_id": person.id, "note": "asked by phone"})
    assert added.status_code == 201
    digest = added.json()["address_hash"]
    listed = (await api.get("/v1/suppressions", params={"contact_id": person.id})).json()
    assert [s["address_hash"] for s in listed["suppressions"]] == [digest]
    s = step(person, ["email", "inbox"])
    await make_service().send([s])
    attempts = (await api.get(f"/v1/contacts/{person.id}/deliveries", params={"key": s.key})).json()["attempts"]
    assert [(a["channel"], a["status"], a["error_class"]) for a in attempts] == [
        ("email", "suppressed", "suppressed"), ("inbox", "delivered", None)]
    assert attempts[0]["step_status"] == "done" and attempts[0]["outcome"] == "delivered"
    assert (await api.delete(f"/v1/suppressions/email/{digest}")).status_code == 204
    assert (await api.delete(f"/v1/suppressions/email/{digest}")).status_code == 404
