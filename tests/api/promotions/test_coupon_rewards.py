"""Coupon rewards in the ledger's catalogue over HTTP: a coupon reward names an active coupon template (422 naming
`coupon_template_id` otherwise), shows its kind; a contact's coupons are listed with where each came from."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction


def _tag() -> str:
    return uuid.uuid4().hex[:8]


async def _created(api: httpx.AsyncClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post(path, json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_a_coupon_reward_needs_an_active_template_and_the_refusal_names_the_field(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    program = (await _created(api, "/v1/ledger/programs", {"name": f"p-{_tag()}"}))["id"]
    template = (await _created(api, "/v1/coupon-templates", {"name": f"t-{_tag()}", "valid_days": 7}))["id"]
    base = {"program_id": program, "name": "coupon", "cost": 100, "stock": 5}
    refusals = [
        (base | {"kind": "coupon"}, "needs the coupon template"),
        (base | {"kind": "coupon", "coupon_template_id": 10**12}, "does not exist"),
        (base | {"coupon_template_id": template}, "only a coupon reward"),
    ]
    for body, why in refusals:
        r = await api.post("/v1/ledger/rewards", json=body)
        assert r.status_code == 422 and r.json()["detail"].startswith("coupon_template_id: "), r.text
        assert why in r.json()["detail"]
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE coupon_templates SET status = 'archived' WHERE id = :t"), {"t": template})
    r = await api.post("/v1/ledger/rewards", json=base | {"kind": "coupon", "coupon_template_id": template})
    assert r.status_code == 422 and "coupon_template_id: " in r.text and "archived" in r.text, r.text
    async with transaction(sessions) as s:
        await s.execute(text("UPDATE coupon_templates SET status = 'active' WHERE id = :t"), {"t": template})
    reward = await _created(api, "/v1/ledger/rewards", base | {"kind": "coupon", "coupon_template_id": template})
    item = await _created(api, "/v1/ledger/rewards", base)
    shown = (await api.get("/v1/ledger/rewards", params={"program_id": program})).json()["items"]
    assert [(r["id"], r["kind"], r["coupon_template_id"]) for r in shown] == \
        [(reward["id"], "coupon", template), (item["id"], "item", None)]


async def test_a_contacts_coupons_are_listed_with_their_source(api: httpx.AsyncClient) -> None:
    template = (await _created(api, "/v1/coupon-templates", {"name": f"t-{_tag()}", "valid_days": 7}))["id"]
    contact = (await api.post("/v1/contacts", json={"user_id": f"c-{_tag()}"})).json()["id"]
    other = (await api.post("/v1/contacts", json={"user_id": f"c-{_tag()}"})).json()["id"]
    for who, reference in [(contact, "claim:c1"), (contact, "reward:9:1:once:0#0"), (other, "claim:c2")]:
        await _created(api, "/v1/coupons", {"template_id": template, "contact_id": who, "reference": reference})
    r = await api.post(f"/v1/coupon-templates/{template}/codes", json={"count": 2, "batch": "flyer"})
    assert r.status_code == 201
    page = (await api.get("/v1/coupons", params={"contact_id": contact, "limit": 1})).json()
    rest = (await api.get("/v1/coupons", params={"contact_id": contact, "after": page["next_after"]})).json()
    assert [(c["reference"], c["source"]) for c in page["items"] + rest["items"]] == \
        [("claim:c1", "issued"), ("reward:9:1:once:0#0", "task")]
    assert rest["next_after"] is None
    everything = (await api.get("/v1/coupons", params={"template_id": template})).json()["items"]
    assert [c["source"] for c in everything] == ["issued", "task", "issued", "bulk", "bulk"]
