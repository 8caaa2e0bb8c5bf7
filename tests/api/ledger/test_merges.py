"""Points follow an identity merge, through the real API: an anonymous visitor's points (two earned months
and a pending hold) move to the known contact they identify as, month for month; the old id reads the new account,
reconciliation finds nothing, and replaying the identify posts nothing more."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import month_label, month_of
from store.db import transaction
from store.ledger import reconcile
from store.ledger.merges import move_points


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _contact(api: httpx.AsyncClient, identity: str) -> int:
    items = (await _ok(await api.get("/v1/contacts", params={"identity": identity})))["items"]
    assert len(items) == 1, items
    return int(items[0]["id"])


async def _merge_postings(sessions: async_sessionmaker[AsyncSession], program: int) -> list[tuple[str, str, int]]:
    async with sessions() as s:
        rows = await s.execute(text(
            "SELECT reference, kind, amount FROM ledger_postings WHERE program_id = :p"
            " AND (reference LIKE :moves OR reference LIKE :voids) ORDER BY id"),
            {"p": program, "moves": "merge:%", "voids": "%:merge"})
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_identify_moves_an_anonymous_visitors_points_to_the_known_contact(
    api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = uuid.uuid4().hex[:8]
    user, anon = f"pm-{tag}", f"anon-pm-{tag}"
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"merge-{tag}", "expiry_months": 12}),
                         201))["id"]
    now = month_of(datetime.now(UTC))
    two_ago, last, this = month_label(now - 2), month_label(now - 1), month_label(now)

    # An anonymous visitor browses and earns points in two months; one redemption is in progress (a hold).
    await _ok(await ingest.post("/v1/track", json={"anonymousId": anon, "event": "app_open", "messageId": f"{tag}-1"}))
    visitor = await _contact(api, f"anonymous_id:{anon}")

    def credit(contact: int, ref: str, amount: int, month: str) -> dict[str, Any]:
        return {"program_id": program, "reference": f"{ref}-{tag}", "kind": "credit", "contact_id": contact,
                "amount": amount, "earned_month": month}

    await _ok(await api.post("/v1/ledger/postings", json=credit(visitor, "v1", 30, two_ago)), 201)
    await _ok(await api.post("/v1/ledger/postings", json=credit(visitor, "v2", 20, last)), 201)
    await _ok(await api.post("/v1/ledger/postings", json={
        "program_id": program, "reference": f"hold-{tag}", "kind": "hold", "contact_id": visitor, "amount": 5}), 201)

    # The known user already has points, one bucket in a month the visitor also earned in.
    await _ok(await ingest.post("/v1/identify", json={"userId": user, "messageId": f"{tag}-2", "traits": {"n": 1}}))
    known = await _contact(api, f"user_id:{user}")
    assert known != visitor
    await _ok(await api.post("/v1/ledger/postings", json=credit(known, "k1", 7, last)), 201)
    await _ok(await api.post("/v1/ledger/postings", json=credit(known, "k2", 100, this)), 201)
    before = await _ok(await api.get(f"/v1/ledger/accounts/{known}", params={"program_id": program}))

    # The visitor identifies: the anonymous contact merges into the known one, and so do its points.
    identify = {"userId": user, "anonymousId": anon, "messageId": f"{tag}-3", "traits": {"plan": "pro"}}
    assert (await _ok(await ingest.post("/v1/identify", json=identify)))["inserted"] == 1
    assert await _contact(api, f"anonymous_id:{anon}") == known
    account = await _ok(await api.get(f"/v1/ledger/accounts/{known}", params={"program_id": program}))
    assert account["balance"] == before["balance"] + 50 == 157 and account["held"] == 0
    assert [(b["month"], b["remaining"]) for b in account["buckets"]] == [(two_ago, 30), (last, 27), (this, 100)]
    # Earned months kept: the moved points expire when they would have in the visitor's account.
    assert {b["month"]: b["expires_end_of"] for b in account["buckets"]}[two_ago] == month_label(now - 2 + 12)
    # The merged-away id reads the survivor's account, as every read by contact id follows a merge.
    old = await _ok(await api.get(f"/v1/ledger/accounts/{visitor}", params={"program_id": program}))
    assert old == account and old["contact_id"] == known

    reference = f"merge:{program}:{visitor}:{known}"
    out = await _ok(await api.get(f"/v1/ledger/programs/{program}/postings/{reference}:out"))
    into = await _ok(await api.get(f"/v1/ledger/programs/{program}/postings/{reference}:in"))
    assert (out["kind"], out["contact_id"], out["amount"], out["balance_after"]) == ("merge_out", visitor, 50, 0)
    assert (into["kind"], into["contact_id"], into["amount"], into["balance_after"]) == ("merge_in", known, 50, 157)
    voided = await _ok(await api.get(f"/v1/ledger/programs/{program}/postings/hold-{tag}:merge"))
    assert (voided["kind"], voided["contact_id"]) == ("void", visitor)
    posted = await _merge_postings(sessions, program)
    assert posted == [(f"hold-{tag}:merge", "void", 5), (f"{reference}:out", "merge_out", 50),
                      (f"{reference}:in", "merge_in", 50)]

    async with transaction(sessions) as s:
        accounts = await reconcile.check_accounts(s, after=0, limit=1_000_000, programs=[program], today=now)
        postings = await reconcile.check_postings(s, after=0, limit=1_000_000, programs=[program])
        programs = await reconcile.check_programs(s, [program])
        system = dict((await s.execute(text("SELECT account, sum(balance) FROM ledger_system_balances"
                                             " WHERE program_id = :p GROUP BY 1"), {"p": program})).all())
    assert (accounts.checked, accounts.found, postings.found, programs.found) == (2, 0, 0, 0)
    assert system.get("transfer", 0) == 0 and system.get("holds", 0) == 0 and system["issuance"] == -157

    # Replays post nothing: the same identify (deduplicated), a fresh identify of the same pair (already one
    # contact), and the merge's own ledger step run again for the same pair.
    assert (await _ok(await ingest.post("/v1/identify", json=identify)))["inserted"] == 0
    again = identify | {"messageId": f"{tag}-4"}
    assert (await _ok(await ingest.post("/v1/identify", json=again)))["inserted"] == 1
    async with transaction(sessions) as s:
        assert await move_points(s, [(visitor, known)], now=datetime.now(UTC)) == []
    assert await _merge_postings(sessions, program) == posted
    assert (await _ok(await api.get(f"/v1/ledger/accounts/{known}", params={"program_id": program})))["balance"] == 157


async def test_merging_contacts_without_points_posts_nothing(
    api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = uuid.uuid4().hex[:8]
    await _ok(await ingest.post("/v1/track", json={"anonymousId": f"a-{tag}", "event": "x", "messageId": f"{tag}-1"}))
    await _ok(await ingest.post("/v1/identify", json={"userId": f"u-{tag}", "messageId": f"{tag}-2"}))
    async with sessions() as s:
        before = await s.scalar(text("SELECT count(*) FROM ledger_postings"))
    await _ok(await ingest.post("/v1/identify", json={"userId": f"u-{tag}", "anonymousId": f"a-{tag}",
                                                      "messageId": f"{tag}-3"}))
    assert await _contact(api, f"anonymous_id:a-{tag}") == await _contact(api, f"user_id:u-{tag}")
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM ledger_postings")) == before


@pytest.mark.parametrize("kind", ["merge_in", "merge_out", "forfeit"])
async def test_the_public_posting_api_refuses_merge_kinds_and_writes_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], kind: str,
) -> None:
    tag = uuid.uuid4().hex[:8]
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"refuse-{tag}"}), 201))["id"]
    contact = (await _ok(await api.post("/v1/contacts", json={"user_id": f"refuse-{tag}"}), 201))["id"]
    r = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"merge:{tag}", "kind": kind,
                                                    "contact_id": contact, "amount": 5})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert "kind" in r.text
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM ledger_postings WHERE program_id = :p"), {"p": program}) == 0
