"""Risk controls through the real API: blocklist, velocity limits on credits and redemptions, and credits held
for review until released (posted once) or rejected (never posted)."""

from __future__ import annotations

import uuid

import httpx


async def _setup(api: httpx.AsyncClient) -> tuple[int, int]:
    program = (await api.post("/v1/ledger/programs", json={"name": f"risk-{uuid.uuid4().hex[:8]}"})).json()["id"]
    contact = (await api.post("/v1/contacts", json={"user_id": f"risk-{uuid.uuid4().hex[:8]}"})).json()["id"]
    return program, contact


async def _balance(api: httpx.AsyncClient, program: int, contact: int) -> int:
    return (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()["balance"]


def _credit(program: int, contact: int, reference: str, amount: int, **risk: str) -> dict:
    return {"program_id": program, "reference": reference, "kind": "credit", "contact_id": contact,
            "amount": amount, **risk}


async def test_a_blocklisted_device_earns_nothing_until_unblocked(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    device = f"farm-{uuid.uuid4().hex[:8]}"
    assert (await api.post("/v1/ledger/risk/blocklist",
                           json={"dimension": "device", "value": device})).status_code == 204
    r = await api.post("/v1/ledger/postings", json=_credit(program, contact, "c1", 10, device=device))
    assert r.status_code == 403 and "blocklist" in r.json()["detail"]
    assert await _balance(api, program, contact) == 0
    assert (await api.delete(f"/v1/ledger/risk/blocklist/device/{device}")).status_code == 204
    assert (await api.post("/v1/ledger/postings",
                           json=_credit(program, contact, "c1", 10, device=device))).status_code == 201


async def test_a_velocity_limit_refuses_new_credits_but_not_replays(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    rule = {"program_id": program, "action": "credit", "dimension": "contact", "window_seconds": 3600,
            "max_count": 2, "verdict": "refuse"}
    assert (await api.post("/v1/ledger/risk/rules", json=rule)).status_code == 201
    for n in range(2):
        assert (await api.post("/v1/ledger/postings", json=_credit(program, contact, f"v{n}", 5))).status_code == 201
    third = await api.post("/v1/ledger/postings", json=_credit(program, contact, "v2", 5))
    assert third.status_code == 429, third.text
    assert (await api.post("/v1/ledger/postings", json=_credit(program, contact, "v0", 5))).status_code == 200
    assert await _balance(api, program, contact) == 10


async def test_a_suspicious_credit_is_held_until_released_once_or_rejected(api: httpx.AsyncClient) -> None:
    program, contact = await _setup(api)
    ip = f"203.0.113.{uuid.uuid4().int % 250}-{uuid.uuid4().hex[:4]}"
    rule = {"program_id": program, "action": "credit", "dimension": "ip", "window_seconds": 86400,
            "max_amount": 100, "verdict": "review"}
    assert (await api.post("/v1/ledger/risk/rules", json=rule)).status_code == 201
    assert (await api.post("/v1/ledger/postings", json=_credit(program, contact, "ok", 80, ip=ip))).status_code == 201
    held = await api.post("/v1/ledger/postings", json=_credit(program, contact, "big", 50, ip=ip))
    assert held.status_code == 202, held.text
    review = held.json()
    assert (review["status"], review["amount"], review["posting"]) == ("pending", 50, None)
    again = await api.post("/v1/ledger/postings", json=_credit(program, contact, "big", 50, ip=ip))
    assert (again.status_code, again.json()["id"]) == (202, review["id"])
    assert await _balance(api, program, contact) == 80
    pending = (await api.get("/v1/ledger/reviews", params={"status": "pending"})).json()
    assert review["id"] in [p["id"] for p in pending]

    released = await api.post(f"/v1/ledger/reviews/{review['id']}/release", json={"note": "known customer"})
    assert released.status_code == 200, released.text
    assert released.json()["posting"]["reference"] == "big"
    assert (await api.post(f"/v1/ledger/reviews/{review['id']}/release", json={"note": "x"})).status_code == 409
    assert await _balance(api, program, contact) == 130
    assert (await api.post("/v1/ledger/postings", json=_credit(program, contact, "big", 50, ip=ip))).status_code == 200

    other = (await api.post("/v1/ledger/postings", json=_credit(program, contact, "bad", 30, ip=ip))).json()
    rejected = await api.post(f"/v1/ledger/reviews/{other['id']}/reject", json={"note": "fraud ring"})
    assert rejected.json()["status"] == "rejected"
    retry = await api.post("/v1/ledger/postings", json=_credit(program, contact, "bad", 30, ip=ip))
    assert (retry.status_code, retry.json()["status"]) == (202, "rejected")
    assert await _balance(api, program, contact) == 130


async def test_a_redemption_velocity_limit_refuses_the_next_order_but_not_a_retry(api: httpx.AsyncClient,
                                                                                 worker: None) -> None:
    program, contact = await _setup(api)
    r = await api.post("/v1/ledger/postings", json=_credit(program, contact, "seed", 1000))
    assert r.status_code == 201
    reward = (await api.post("/v1/ledger/rewards", json={"program_id": program, "name": "Cup", "cost": 10,
                                                          "stock": 10})).json()["id"]
    rule = {"program_id": program, "action": "redeem", "dimension": "contact", "window_seconds": 3600,
            "max_count": 1, "verdict": "refuse"}
    assert (await api.post("/v1/ledger/risk/rules", json=rule)).status_code == 201
    assert (await api.post("/v1/ledger/risk/rules", json=rule | {"verdict": "review"})).status_code == 422
    first = {"order_id": f"o-{uuid.uuid4().hex[:8]}", "contact_id": contact, "reward_id": reward}
    assert (await api.post("/v1/redemptions", json=first)).status_code == 202
    assert (await api.post("/v1/redemptions", json=first)).status_code == 200
    second = await api.post("/v1/redemptions", json=first | {"order_id": f"o-{uuid.uuid4().hex[:8]}"})
    assert second.status_code == 429, second.text
