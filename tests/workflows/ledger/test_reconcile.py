"""ReconciliationWorkflow on the real Temporal server and Postgres: injected errors are found; known classes
are fixed by an audited posting, the rest wait in the review queue until someone resolves them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from domain.ledger.postings import Kind, Request
from store.db import transaction
from store.ledger import accounts
from workflows.ledger.operations import (
    EXPIRY_SCHEDULE,
    RECONCILE_SCHEDULE,
    RETENTION_SCHEDULE,
    ReconciliationWorkflow,
    ensure_schedules,
)


async def _program_with_contacts(api: httpx.AsyncClient, n: int) -> tuple[int, list[int]]:
    program = (await api.post("/v1/ledger/programs", json={"name": f"rec-{uuid.uuid4().hex[:8]}"})).json()["id"]
    contacts = []
    for _ in range(n):
        contact = (await api.post("/v1/contacts", json={"user_id": f"rec-{uuid.uuid4().hex[:8]}"})).json()["id"]
        for j, amount in enumerate((70, 30)):
            r = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"seed:{contact}:{j}",
                                                            "kind": "credit", "contact_id": contact, "amount": amount})
            assert r.status_code == 201, r.text
        contacts.append(contact)
    return program, contacts


async def _reconcile(api: httpx.AsyncClient, program: int) -> dict:
    started = await api.post("/v1/ledger/reconciliations", json={"program_ids": [program]})
    assert started.status_code == 202, started.text
    workflow_id = started.json()["workflow_id"]
    for _ in range(300):
        run = (await api.get(f"/v1/ledger/reconciliations/{workflow_id}")).json()
        if run["status"] != "RUNNING":
            assert run["status"] == "COMPLETED", run
            return run["totals"]
        await asyncio.sleep(0.1)
    raise AssertionError(f"reconciliation {workflow_id} did not finish")


async def _drop_schedules(client: Client) -> None:
    """The API ensures the ledger's schedules; a test server must not fire them into other tests."""
    for schedule_id in (RECONCILE_SCHEDULE, EXPIRY_SCHEDULE, RETENTION_SCHEDULE):
        await client.get_schedule_handle(schedule_id).delete()


async def _findings(api: httpx.AsyncClient, program: int, **params: str) -> list[dict]:
    r = await api.get("/v1/ledger/findings", params={"program_id": program, **params})
    assert r.status_code == 200, r.text
    return r.json()["findings"]


async def _account(api: httpx.AsyncClient, program: int, contact: int) -> dict:
    return (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()


async def test_a_corrupted_balance_is_found_and_restated_by_an_audited_posting(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    program, (drifted, bucketed, healthy) = await _program_with_contacts(api, 3)
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE ledger_accounts SET balance = balance + 50 WHERE contact_id = :c "
                             "AND program_id = :p"), {"c": drifted, "p": program})
        await s.execute(text("UPDATE ledger_buckets SET remaining = remaining - 20 WHERE contact_id = :c "
                             "AND program_id = :p"), {"c": bucketed, "p": program})
    assert (await _account(api, program, drifted))["balance"] == 150

    totals = await _reconcile(api, program)
    assert (totals["accounts"], totals["found"], totals["fixed"]) == (3, 2, 2)
    fixed = {f["contact_id"]: f for f in await _findings(api, program, status="fixed")}
    assert fixed[drifted]["finding_class"] == "balance_drift"
    assert fixed[drifted]["detail"] == {"balance": 150, "journal": 100, "buckets": 100}
    assert fixed[bucketed]["finding_class"] == "bucket_drift"
    assert healthy not in fixed
    for contact in (drifted, bucketed):
        account = await _account(api, program, contact)
        assert account["balance"] == sum(b["remaining"] for b in account["buckets"]) == 100
    # The fix is journaled as a posting under the finding's reference: it moved no points.
    reference = fixed[drifted]["fixed_by"]
    assert reference == f"reconcile:{fixed[drifted]['id']}"
    posting = (await api.get(f"/v1/ledger/programs/{program}/postings/{reference}")).json()
    assert (posting["kind"], posting["amount"], posting["balance_after"], posting["entries"]) == (
        "restate", -50, 100, [])

    again = await _reconcile(api, program)
    assert (again["found"], again["fixed"]) == (0, 0)
    await _drop_schedules(temporal_client)


async def test_a_journal_disagreement_goes_to_review_once_and_is_resolved_with_a_note(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    program, (contact,) = await _program_with_contacts(api, 1)
    async with transaction(sessions) as s:
        await s.execute(text("DELETE FROM ledger_entries WHERE contact_id = :c AND program_id = :p AND amount = 30"),
                        {"c": contact, "p": program})
    first = await _reconcile(api, program)
    assert (first["found"], first["fixed"]) == (2, 0)
    review = await _findings(api, program, status="open")
    assert sorted(f["finding_class"] for f in review) == ["entry_mismatch", "journal_drift"]
    await _reconcile(api, program)  # still wrong: the open findings are not filed twice
    assert len(await _findings(api, program, status="open")) == 2

    journal = next(f for f in review if f["finding_class"] == "journal_drift")
    r = await api.post(f"/v1/ledger/findings/{journal['id']}/resolve", json={"note": "restored from archive"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["note"]) == ("resolved", "restored from archive")
    again = await api.post(f"/v1/ledger/findings/{journal['id']}/resolve", json={"note": "twice"})
    assert again.status_code == 409
    assert (await api.post("/v1/ledger/findings/999999999/resolve", json={"note": "x"})).status_code == 404
    assert (await api.post(f"/v1/ledger/findings/{journal['id']}/resolve", json={"note": ""})).status_code == 422
    assert (await _account(api, program, contact))["balance"] == 100  # nothing was guessed
    await _drop_schedules(temporal_client)


async def test_a_hold_past_its_timeout_is_voided_and_its_points_return(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession],
        temporal_client: Client) -> None:
    program, (contact,) = await _program_with_contacts(api, 1)
    async with transaction(sessions) as s:
        await accounts.post(s, program, Request("order-1:hold", Kind.HOLD, contact, 80, hold_seconds=60),
                         now=datetime.now(UTC) - timedelta(hours=1))
    assert (await _account(api, program, contact))["held"] == 80
    totals = await _reconcile(api, program)
    assert totals["holds_voided"] == 1
    account = await _account(api, program, contact)
    assert (account["balance"], account["held"]) == (100, 0)
    (finding,) = await _findings(api, program, status="fixed")
    assert (finding["finding_class"], finding["fixed_by"]) == ("hold_timed_out", "order-1:hold:timeout")
    await _drop_schedules(temporal_client)


async def test_the_schedule_is_created_once_however_often_it_is_ensured(temporal_client: Client) -> None:
    await ensure_schedules(temporal_client)
    await ensure_schedules(temporal_client)
    handle = temporal_client.get_schedule_handle(RECONCILE_SCHEDULE)
    described = await handle.describe()
    assert described.schedule.action.workflow == ReconciliationWorkflow.__name__  # type: ignore[attr-defined]
    await _drop_schedules(temporal_client)
