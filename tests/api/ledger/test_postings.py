"""The points ledger through the real HTTP API: replays, conflicts, balances, statements, refusals."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from domain.ledger.postings import month_label, month_of


async def _setup(api: httpx.AsyncClient, expiry: int | None = 12) -> tuple[int, int]:
    r = await api.post("/v1/ledger/programs", json={"name": f"coins-{uuid.uuid4().hex[:8]}", "unit": "coins",
                                                    "expiry_months": expiry})
    assert r.status_code == 201, r.text
    c = await api.post("/v1/contacts", json={"user_id": f"ledger-api-{uuid.uuid4().hex[:8]}"})
    assert c.status_code == 201, c.text
    return r.json()["id"], c.json()["id"]


async def _account(api: httpx.AsyncClient, program: int, contact: int) -> dict:
    r = await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})
    assert r.status_code == 200, r.text
    return r.json()


async def test_a_replayed_posting_returns_200_with_the_same_body_and_credits_once(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    body = {"program_id": program, "reference": f"reward:checkin:{contact}:2025-06-01:1", "kind": "credit",
            "contact_id": contact, "amount": 25, "memo": "Daily check-in"}
    first = await api.post("/v1/ledger/postings", json=body)
    again = await api.post("/v1/ledger/postings", json=body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    assert first.json()["entries"] == [{"account": "issuance", "amount": -25}, {"account": "user", "amount": 25}]
    assert (await _account(api, program, contact))["balance"] == 25


async def test_a_reference_reused_for_another_amount_is_a_409_and_changes_nothing(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    body = {"program_id": program, "reference": "grant-7", "kind": "credit", "contact_id": contact, "amount": 5}
    assert (await api.post("/v1/ledger/postings", json=body)).status_code == 201
    r = await api.post("/v1/ledger/postings", json=body | {"amount": 6})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert "grant-7" in r.json()["detail"]
    assert (await _account(api, program, contact))["balance"] == 5


async def test_bad_postings_are_4xx_and_write_nothing(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    base = {"program_id": program, "kind": "credit", "contact_id": contact, "amount": 5}
    cases = [
        (base | {"reference": "r1", "amount": 1.5}, 422),
        (base | {"reference": "r2", "amount": "5"}, 422),
        (base | {"reference": "r3", "amount": -5}, 422),
        (base | {"reference": "r4", "kind": "debit", "amount": 1}, 422),  # not enough points
        (base | {"reference": "r5", "contact_id": 2**62}, 404),
        (base | {"reference": "r6", "program_id": 2**62}, 404),
        (base | {"reference": "r7", "earned_month": "2025-13"}, 422),
        (base | {"reference": "r8", "kind": "commit", "hold_reference": "nope"}, 409),
        (base | {"reference": "r9", "unknown": 1}, 422),
    ]
    for body, status in cases:
        r = await api.post("/v1/ledger/postings", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    account = await _account(api, program, contact)
    assert (account["balance"], account["buckets"]) == (0, [])
    r = await api.get(f"/v1/ledger/accounts/{contact}/statement", params={"program_id": program})
    assert r.json()["lines"] == []


async def test_the_account_shows_buckets_expiring_soon_and_the_statement(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api, expiry=1)  # points expire at the end of the month after they were earned
    this = month_of(datetime.now(UTC))
    post = {"program_id": program, "contact_id": contact}
    assert (await api.post("/v1/ledger/postings", json=post | {"reference": "old", "kind": "credit", "amount": 40,
                                                               "earned_month": month_label(this - 1)})
            ).status_code == 201
    assert (await api.post("/v1/ledger/postings", json=post | {"reference": "new", "kind": "credit",
                                                               "amount": 10})).status_code == 201
    assert (await api.post("/v1/ledger/postings", json=post | {"reference": "spend", "kind": "debit",
                                                               "amount": 30})).status_code == 201
    account = await _account(api, program, contact)
    assert (account["balance"], account["expired"]) == (20, 0)
    assert account["buckets"][0] == {"month": month_label(this - 1), "remaining": 10,
                                     "expires_end_of": month_label(this)}
    assert account["expiring_soon"] == 10  # last month's points end with this month
    statement = (await api.get(f"/v1/ledger/accounts/{contact}/statement",
                               params={"program_id": program})).json()
    assert [(x["reference"], x["amount"]) for x in statement["lines"]] == [("spend", -30), ("new", 10), ("old", 40)]


async def test_reading_needs_a_key_and_posting_needs_admin(anon_api: httpx.AsyncClient, read_key: str,
                                                           api_url: str) -> None:
    assert (await anon_api.get("/v1/ledger/programs")).status_code == 401
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_key}"}) as reader:
        assert (await reader.get("/v1/ledger/programs")).status_code == 200
        r = await reader.post("/v1/ledger/postings", json={"program_id": 1, "reference": "x", "kind": "credit",
                                                           "contact_id": 1, "amount": 1})
        assert r.status_code == 403
