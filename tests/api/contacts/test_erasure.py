"""Right to erasure through the real API: personal data and identities go from every table, the segment
counts drop the contact, a completed campaign's counts stay, and the points ledger still reconciles."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import month_of
from store.db import transaction
from store.ledger import reconcile


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def _campaign_done(api: httpx.AsyncClient, campaign: int) -> dict[str, Any]:
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{campaign}")).json()
        if body["status"] == "completed":
            return body["run"]  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"campaign {campaign} did not complete")


# Every place a value of the person could hide, as (table, columns searched as text).
PERSONAL_COLUMNS = [
    ("contacts", "user_id || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '') || ' ' || traits::text"),
    ("identities", "value"), ("events", "properties::text || context::text || message_id"),
    ("deliveries", "coalesce(provider_message_id, '') || coalesce(error, '')"),
    ("ledger_postings", "coalesce(memo, '')"), ("ledger_reviews", "request::text || coalesce(note, '')"),
    ("ledger_risk_events", "value"), ("ledger_blocklist", "value"),
]


async def _traces(sessions: async_sessionmaker[AsyncSession], needles: list[str]) -> dict[str, int]:
    found = {}
    async with sessions() as s:
        for table, columns in PERSONAL_COLUMNS:
            found[table] = await s.scalar(text(
                f"SELECT count(*) FROM {table} WHERE ({columns}) LIKE ANY(:n)"), {"n": [f"%{x}%" for x in needles]})
    return found


async def _rows_of(sessions: async_sessionmaker[AsyncSession], contact: int) -> dict[str, int]:
    tables = ["contacts WHERE id", "identities WHERE contact_id", "events WHERE contact_id",
              "contact_event_daily WHERE contact_id", "contact_event_recent WHERE contact_id",
              "contact_scores WHERE contact_id", "segment_members WHERE contact_id",
              "segment_transitions WHERE contact_id", "contact_merges WHERE merged_into",
              "ledger_holds WHERE status = 'pending' AND contact_id"]
    async with sessions() as s:
        return {t.split()[0]: await s.scalar(text(f"SELECT count(*) FROM {t} = :c"), {"c": contact}) for t in tables}


async def test_erasure_reaches_every_table_and_keeps_aggregates_and_books_right(
    api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], worker: None,
) -> None:
    tag = uuid.uuid4().hex[:8]
    user, anon, email, phone = f"er-{tag}", f"anon-{tag}", f"er-{tag}@example.com", f"+4470{tag}"
    device, ip = f"dev-{tag}", f"198.51.100.{int(tag[:2], 16) % 250}-{tag}"
    context = {"ip": ip, "device": {"id": device}}
    batch = {"batch": [
        {"type": "identify", "userId": user, "anonymousId": anon, "messageId": f"{tag}-1", "context": context,
         "traits": {"email": email, "phone": phone, "plan": f"plan-{tag}", "name": f"Name {tag}"}},
        {"type": "track", "userId": user, "event": "order_paid", "messageId": f"{tag}-2", "context": context,
         "properties": {"amount": 120, "shipping_to": f"street {tag}"}},
    ]}
    assert (await _ok(await ingest.post("/v1/batch", json=batch)))["inserted"] == 2
    contact = (await _ok(await api.get("/v1/contacts", params={"user_id": user})))["items"][0]["id"]
    other = (await _ok(await api.post("/v1/contacts", json={"user_id": f"stay-{tag}",
                                                            "email": f"stay-{tag}@example.com",
                                                            "traits": {"plan": f"plan-{tag}"}}), 201))["id"]

    # Segments: a manual list and a rule segment, both holding both contacts.
    manual = (await _ok(await api.post("/v1/segments", json={
        "name": f"list {tag}", "kind": "manual", "contact_ids": [contact, other]}), 201))["id"]
    rule = (await _ok(await api.post("/v1/segments", json={
        "name": f"rule {tag}", "rule": {"field": "traits.plan", "op": "eq", "value": f"plan-{tag}"}}), 201))["id"]
    for segment in (manual, rule):
        assert (await _ok(await api.get(f"/v1/segments/{segment}/count")))["count"] == 2

    # A completed campaign to both.
    campaign = (await _ok(await api.post("/v1/campaigns", json={
        "name": f"erase {tag}", "subject": "s", "body": "b",
        "audience": {"contact_ids": [contact, other]}}), 201))["id"]
    await _ok(await api.post(f"/v1/campaigns/{campaign}/launch"), 202)
    run = await _campaign_done(api, campaign)
    assert (run["total"], run["sent"]) == (2, 2)

    # Points: a credit (memo with the email, device and IP screened), a hold, a credit held for review.
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"erase-{tag}"}), 201))["id"]
    await _ok(await api.post("/v1/ledger/risk/rules", json={
        "program_id": program, "action": "credit", "dimension": "device", "window_seconds": 3600,
        "max_amount": 150, "verdict": "review"}), 201)

    def credit(ref: str, amount: int) -> dict[str, Any]:
        return {"program_id": program, "reference": ref, "kind": "credit", "contact_id": contact, "amount": amount,
                "memo": f"welcome {email}", "device": device, "ip": ip}

    await _ok(await api.post("/v1/ledger/postings", json=credit(f"c1-{tag}", 100)), 201)
    review = await _ok(await api.post("/v1/ledger/postings", json=credit(f"c2-{tag}", 80)), 202)
    await _ok(await api.post("/v1/ledger/postings", json={
        "program_id": program, "reference": f"h-{tag}", "kind": "hold", "contact_id": contact, "amount": 30}), 201)
    other_credit = {"program_id": program, "reference": f"o-{tag}", "kind": "credit", "contact_id": other, "amount": 7}
    await _ok(await api.post("/v1/ledger/postings", json=other_credit), 201)
    account = await _ok(await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program}))
    assert (account["balance"], account["held"]) == (70, 30)
    await _ok(await api.post("/v1/ledger/risk/blocklist", json={"dimension": "contact", "value": str(contact)}), 204)
    needles = [user, anon, email, phone, device, ip, f"Name {tag}", f"street {tag}"]
    before = await _traces(sessions, needles)  # the search finds the person before
    assert [t for t, n in before.items() if not n] == ["deliveries", "ledger_blocklist"]
    before_rows = await _rows_of(sessions, contact)  # (rollups and scores appear when the segments consumer runs)
    assert all(before_rows[t] for t in ("contacts", "identities", "events", "contact_event_daily", "segment_members",
                                        "segment_transitions", "ledger_holds")), before_rows

    r = await api.delete(f"/v1/contacts/{contact}")
    assert r.status_code == 204, r.text

    assert await _traces(sessions, needles) == {t: 0 for t, _ in PERSONAL_COLUMNS}
    assert set((await _rows_of(sessions, contact)).values()) == {0}
    async with sessions() as s:
        delivery = (await s.execute(text("SELECT status, provider_message_id, error FROM deliveries"
                                         " WHERE contact_id = :c"), {"c": contact})).one()
        blocked = await s.scalar(text("SELECT count(*) FROM ledger_blocklist WHERE value = :v"), {"v": str(contact)})
    assert tuple(delivery) == ("sent", None, None) and blocked == 0
    for segment in (manual, rule):
        assert (await _ok(await api.get(f"/v1/segments/{segment}/count")))["count"] == 1
    members = (await _ok(await api.get(f"/v1/segments/{manual}/members")))["items"]
    assert [m["contact_id"] for m in members] == [other]
    after = (await _ok(await api.get(f"/v1/campaigns/{campaign}")))["run"]
    assert (after["total"], after["sent"], after["failed"], after["queued"]) == (2, 2, 0, 0)

    # The ledger: what remained (70 free + 30 held) went to breakage; the anonymous account is empty and the
    # program, every account and every posting still reconcile.
    erased = await _ok(await api.get(f"/v1/ledger/programs/{program}/postings/erase:{program}:{contact}"))
    assert (erased["kind"], erased["amount"], erased["balance_after"]) == ("forfeit", 100, 0)
    assert (await _ok(await api.get(f"/v1/ledger/programs/{program}/postings/h-{tag}:erase")))["kind"] == "void"
    async with sessions() as s:
        balance = await s.scalar(text("SELECT balance FROM ledger_accounts WHERE contact_id = :c AND program_id = :p"),
                                 {"c": contact, "p": program})
        system = dict((await s.execute(text("SELECT account, sum(balance) FROM ledger_system_balances"
                                             " WHERE program_id = :p GROUP BY 1"), {"p": program})).all())
        reviewed = await s.scalar(text("SELECT status FROM ledger_reviews WHERE id = :i"), {"i": review["id"]})
    assert balance == 0 and reviewed == "rejected"
    assert (system["breakage"], system.get("holds", 0), system["issuance"]) == (100, 0, -107)
    async with transaction(sessions) as s:
        today = month_of(datetime.now(UTC))
        accounts = await reconcile.check_accounts(s, after=0, limit=1_000_000, programs=[program], today=today)
        postings = await reconcile.check_postings(s, after=0, limit=1_000_000, programs=[program])
        programs = await reconcile.check_programs(s, [program])
    assert (accounts.checked, accounts.found, postings.found, programs.found) == (2, 0, 0, 0)

    # The erased id answers 404 everywhere; nothing can be posted to it; a replayed batch brings nobody back.
    for path in (f"/v1/contacts/{contact}", f"/v1/contacts/{contact}/events"):
        gone = await api.get(path)
        assert gone.status_code == 404 and "erased" in gone.json()["detail"]
    assert (await api.patch(f"/v1/contacts/{contact}", json={"traits": {"a": 1}})).status_code == 404
    late = {"program_id": program, "reference": f"late-{tag}", "kind": "credit", "contact_id": contact, "amount": 5}
    assert (await api.post("/v1/ledger/postings", json=late)).status_code == 404
    assert (await _ok(await ingest.post("/v1/batch", json=batch)))["inserted"] == 0
    assert (await _ok(await api.get("/v1/contacts", params={"user_id": user})))["items"] == []
    assert await _traces(sessions, needles) == {t: 0 for t, _ in PERSONAL_COLUMNS}
    assert (await api.delete(f"/v1/contacts/{contact}")).status_code == 404
    async with sessions() as s:
        proof = await s.scalar(text("SELECT removed FROM contact_erasures WHERE contact_id = :c"), {"c": contact})
    assert proof["points_forfeited"] == 100 and proof["segment_members"] == 2 and proof["deliveries"] == 1


async def test_bad_erasure_requests_change_nothing(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    tag = uuid.uuid4().hex[:8]
    contact = (await _ok(await api.post("/v1/contacts", json={"user_id": f"bad-{tag}"}), 201))["id"]
    before = await _rows_of(sessions, contact)
    unknown = await api.delete("/v1/contacts/999999999999")
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    for bad in ("abc", "1.5", "%20"):
        r = await api.delete(f"/v1/contacts/{bad}")
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (bad, r.text)
    assert await _rows_of(sessions, contact) == before
    assert (await api.get(f"/v1/contacts/{contact}")).status_code == 200


async def test_erasure_waits_for_a_redemption_in_progress(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A saga still holding points must finish first: the erasure is refused and changes nothing."""
    tag = uuid.uuid4().hex[:8]
    program = (await _ok(await api.post("/v1/ledger/programs", json={"name": f"wait-{tag}"}), 201))["id"]
    contact = (await _ok(await api.post("/v1/contacts", json={"user_id": f"wait-{tag}"}), 201))["id"]
    await _ok(await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"c-{tag}",
                                                          "kind": "credit", "contact_id": contact, "amount": 10}), 201)
    async with transaction(sessions) as s:  # an order whose workflow is still running
        reward = await s.scalar(text("INSERT INTO ledger_rewards (program_id, name, cost, stock)"
                                     " VALUES (:p, 'mug', 5, 1) RETURNING id"), {"p": program})
        await s.execute(text("INSERT INTO ledger_redemptions (order_id, program_id, contact_id, reward_id, quantity,"
                             " points, status) VALUES (:o, :p, :c, :r, 1, 5, 'pending')"),
                        {"o": f"order-{tag}", "p": program, "c": contact, "r": reward})
    r = await api.delete(f"/v1/contacts/{contact}")
    assert r.status_code == 409 and f"order-{tag}" in r.json()["detail"]
    assert (await _ok(await api.get(f"/v1/contacts/{contact}")))["user_id"] == f"wait-{tag}"
    assert (await _ok(await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})))["balance"] == 10
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE ledger_redemptions SET status = 'completed' WHERE order_id = :o"),
                        {"o": f"order-{tag}"})
    assert (await api.delete(f"/v1/contacts/{contact}")).status_code == 204
