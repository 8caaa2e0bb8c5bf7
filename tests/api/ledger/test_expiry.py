"""Expiry through the HTTP API: credits into closed or future months are refused with a clear 422, an account never
shows expired points as spendable, and an operator runs expiry on demand and reads what it did."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.ledger.postings import Kind, Request, month_label, month_of, month_start
from store.db import transaction
from store.ledger import accounts


async def _setup(api: httpx.AsyncClient, expiry: int | None) -> tuple[int, int]:
    r = await api.post("/v1/ledger/programs", json={"name": f"exp-api-{uuid.uuid4().hex[:8]}", "expiry_months": expiry})
    assert r.status_code == 201, r.text
    c = await api.post("/v1/contacts", json={"user_id": f"exp-api-{uuid.uuid4().hex[:8]}"})
    assert c.status_code == 201, c.text
    return r.json()["id"], c.json()["id"]


def _in_month(month: int, day: int = 10) -> datetime:
    start = month_start(month)
    return datetime(start.year, start.month, day, 12, tzinfo=UTC)


async def test_credits_into_an_expired_or_future_month_are_422_with_a_clear_message_and_write_nothing(
        api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api, expiry=1)
    this = month_of(datetime.now(UTC))
    base = {"program_id": program, "kind": "credit", "contact_id": contact, "amount": 40}
    expired = await api.post("/v1/ledger/postings", json=base | {"reference": "late",
                                                                 "earned_month": month_label(this - 2)})
    assert expired.status_code == 422, expired.text
    assert expired.headers["content-type"] == "application/problem+json"
    assert f"earned in {month_label(this - 2)} expired at the end of {month_label(this - 1)}" in \
        expired.json()["detail"]
    future = await api.post("/v1/ledger/postings", json=base | {"reference": "ahead", "earned_month": "2030-01"})
    assert future.status_code == 422, future.text
    assert "2030-01 has not started" in future.json()["detail"]
    adjusted = await api.post("/v1/ledger/postings", json=base | {"reference": "adj", "kind": "adjust",
                                                                  "earned_month": month_label(this - 2)})
    assert adjusted.status_code == 422, adjusted.text
    account = (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()
    assert (account["balance"], account["expired"], account["buckets"]) == (0, 0, [])
    ok = await api.post("/v1/ledger/postings", json=base | {"reference": "import",
                                                            "earned_month": month_label(this - 1)})
    assert ok.status_code == 201, ok.text


async def _run(api: httpx.AsyncClient, body: dict) -> dict:
    started = await api.post("/v1/ledger/expiry-runs", json=body)
    assert started.status_code == 202, started.text
    workflow_id = started.json()["workflow_id"]
    assert workflow_id.startswith("ledger-expiry:") and started.json()["status"] == "RUNNING"
    for _ in range(300):
        run = await api.get(f"/v1/ledger/expiry-runs/{workflow_id}")
        assert run.status_code == 200, run.text
        if run.json()["status"] != "RUNNING":
            return run.json()
        await asyncio.sleep(0.1)
    raise AssertionError(f"expiry run {workflow_id} did not finish")


async def test_expiry_runs_on_demand_and_the_account_never_showed_the_expired_points_as_spendable(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    program, contact = await _setup(api, expiry=1)
    this = month_of(datetime.now(UTC))
    async with transaction(sessions) as s:  # earned two months ago, when that month was open
        await accounts.post(s, program, Request("old", Kind.CREDIT, contact, 30), now=_in_month(this - 2))
        await accounts.post(s, program, Request("new", Kind.CREDIT, contact, 12), now=_in_month(this - 1))
    before = (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()
    assert (before["balance"], before["expired"]) == (12, 30)
    assert [b["month"] for b in before["buckets"]] == [month_label(this - 1)]
    spend = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": "spend", "kind": "debit",
                                                        "contact_id": contact, "amount": 13})
    assert spend.status_code == 422 and "12 spendable" in spend.json()["detail"]

    run = await _run(api, {"program_ids": [program]})
    assert run["status"] == "COMPLETED", run
    assert run["totals"] == {"programs": 1, "contacts": 1, "postings": 1, "points": 30, "refused": 0}
    after = (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()
    assert (after["balance"], after["expired"]) == (12, 0)
    posting = await api.get(f"/v1/ledger/programs/{program}/postings/"
                            f"expire:{program}:{contact}:earned:{month_label(this - 2)}")
    assert (posting.json()["kind"], posting.json()["amount"]) == ("expire", 30)

    # The Temporal UI names it: NudgeKind and a summary, no personal data.
    described = await temporal_client.get_workflow_handle(run["workflow_id"]).describe()
    kinds = [v for k, v in described.typed_search_attributes if k.name == "NudgeKind"]  # type: ignore[misc]
    assert kinds == ["expiry"]
    assert await described.static_summary() == f"Points expiry (on demand): programs {program}"

    again = await _run(api, {"program_ids": [program]})
    assert again["totals"]["postings"] == 0


async def test_expiry_run_lookups_and_bad_input(api: httpx.AsyncClient, read_key: str, api_url: str) -> None:
    assert (await api.get("/v1/ledger/expiry-runs/ledger-reconcile:abc")).status_code == 404
    assert (await api.get("/v1/ledger/expiry-runs/ledger-expiry:does-not-exist")).status_code == 404
    assert (await api.post("/v1/ledger/expiry-runs", json={"program_ids": ["x"]})).status_code == 422
    assert (await api.post("/v1/ledger/expiry-runs", json={"now": "2026-01-01"})).status_code == 422
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_key}"}) as reader:
        assert (await reader.post("/v1/ledger/expiry-runs", json={})).status_code == 403
