"""Reads addressed by a merged-away contact id follow the merge to the surviving contact, the same way for
every read: the profile, its events, its points account and statement. Nothing answers silently empty."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _contact(api: httpx.AsyncClient, identity: str) -> int:
    items = (await _ok(await api.get("/v1/contacts", params={"identity": identity})))["items"]
    assert len(items) == 1, items
    return int(items[0]["id"])


async def test_every_read_by_a_merged_away_id_follows_the_merge(api: httpx.AsyncClient,
                                                                ingest: httpx.AsyncClient) -> None:
    tag = uuid.uuid4().hex[:8]
    user, anon = f"mr-{tag}", f"anon-mr-{tag}"
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"mr-{tag}"}), 201))["id"]
    await _ok(await ingest.post("/v1/track", json={"anonymousId": anon, "event": "app_open", "messageId": f"{tag}-1"}))
    visitor = await _contact(api, f"anonymous_id:{anon}")
    await _ok(await api.post("/v1/ledger/postings", json={
        "program_id": program, "reference": f"v-{tag}", "kind": "credit", "contact_id": visitor, "amount": 30}), 201)
    await _ok(await ingest.post("/v1/identify", json={"userId": user, "messageId": f"{tag}-2"}))
    known = await _contact(api, f"user_id:{user}")
    await _ok(await ingest.post("/v1/identify", json={"userId": user, "anonymousId": anon, "messageId": f"{tag}-3"}))
    assert await _contact(api, f"anonymous_id:{anon}") == known != visitor

    profile = await _ok(await api.get(f"/v1/contacts/{visitor}"))
    assert profile["id"] == known
    by_old = await _ok(await api.get(f"/v1/contacts/{visitor}/events"))
    by_new = await _ok(await api.get(f"/v1/contacts/{known}/events"))
    assert by_old == by_new and {e["event"] for e in by_old["items"]} >= {"app_open"}
    account = await _ok(await api.get(f"/v1/ledger/accounts/{visitor}", params={"program_id": program}))
    assert (account["contact_id"], account["balance"]) == (known, 30)
    old_statement = await _ok(await api.get(f"/v1/ledger/accounts/{visitor}/statement", params={"program_id": program}))
    assert old_statement == await _ok(await api.get(f"/v1/ledger/accounts/{known}/statement",
                                                    params={"program_id": program}))
    assert [(line["kind"], line["amount"]) for line in old_statement["lines"]] == [("merge_in", 30)]


async def test_reads_of_an_id_that_never_existed_are_404(api: httpx.AsyncClient) -> None:
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"mr-{uuid.uuid4().hex[:8]}"}), 201))
    missing = 9_000_000_000
    for path in (f"/v1/contacts/{missing}", f"/v1/contacts/{missing}/events",
                 f"/v1/ledger/accounts/{missing}?program_id={program['id']}",
                 f"/v1/ledger/accounts/{missing}/statement?program_id={program['id']}"):
        assert (await api.get(path)).status_code == 404, path
