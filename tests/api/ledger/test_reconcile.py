"""Reconciliation's API vocabulary is the one its responses use: findings are filtered by `finding_class` (the
field's name; `class` still works, deprecated), and the posting schema documents every kind a posting can have,
reconciliation's `restate` included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import Kind, month_of
from store.db import transaction
from store.ledger.reconcile import check_accounts


async def _drifted_program(api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> int:
    """A program with one balance drift and one bucket drift, both found and restated."""
    program = (await api.post("/v1/ledger/programs", json={"name": f"fc-{uuid.uuid4().hex[:8]}"})).json()["id"]
    contacts = []
    for n in range(2):
        contact = (await api.post("/v1/contacts", json={"user_id": f"fc-{uuid.uuid4().hex[:8]}"})).json()["id"]
        r = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"seed-{n}",
                                                        "kind": "credit", "contact_id": contact, "amount": 50})
        assert r.status_code == 201, r.text
        contacts.append(contact)
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE ledger_accounts SET balance = balance + 5 WHERE contact_id = :c "
                             "AND program_id = :p"), {"c": contacts[0], "p": program})
        await s.execute(text("UPDATE ledger_buckets SET remaining = remaining - 5 WHERE contact_id = :c "
                             "AND program_id = :p"), {"c": contacts[1], "p": program})
    async with transaction(sessions) as s:
        found = await check_accounts(s, after=min(contacts) - 1, limit=2, programs=[program],
                                     today=month_of(datetime.now(UTC)))
    assert (found.found, found.fixed) == (2, 2)
    return int(program)


async def test_findings_are_filtered_by_finding_class_and_class_still_works(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    program = await _drifted_program(api, sessions)
    for param in ("finding_class", "class"):
        r = await api.get("/v1/ledger/findings", params={"program_id": program, param: "bucket_drift"})
        assert r.status_code == 200, r.text
        assert [f["finding_class"] for f in r.json()["findings"]] == ["bucket_drift"], param
    unknown = await api.get("/v1/ledger/findings", params={"finding_class": "bucket_drfit"})
    assert unknown.status_code == 422 and "balance_drift" in unknown.text
    both = await api.get("/v1/ledger/findings", params={"finding_class": "bucket_drift", "class": "balance_drift"})
    assert both.status_code == 422


async def test_the_posting_schema_documents_every_kind_restate_included(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    schema = (await api.get("/openapi.json")).json()["components"]["schemas"]
    documented = set(schema["PostingOut"]["properties"]["kind"]["enum"])
    assert documented == {k.value for k in Kind} | {"restate"}
    assert set(schema["StatementLineOut"]["properties"]["kind"]["enum"]) == documented
    assert "restate" in schema["PostingOut"]["properties"]["kind"]["description"]

    program = await _drifted_program(api, sessions)
    fixed = (await api.get("/v1/ledger/findings", params={"program_id": program, "status": "fixed"})).json()
    reference = fixed["findings"][0]["fixed_by"]
    posting = await api.get(f"/v1/ledger/programs/{program}/postings/{reference}")
    assert posting.status_code == 200 and posting.json()["kind"] == "restate"
