"""The promotions API over HTTP: configuration with validation errors that name the field, issuance, a quote that
explains an invalid coupon, bulk codes streamed, and orders: locked, replayed with the same id, refused with a
different body, confirmed and cancelled."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def _sku() -> str:
    return f"sku-{uuid.uuid4().hex[:8]}"


async def _promotion(api: httpx.AsyncClient, **definition: Any) -> dict[str, Any]:
    r = await api.post("/v1/promotions", json={"name": "test", **definition})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _contact(api: httpx.AsyncClient) -> int:
    r = await api.post("/v1/contacts", json={"user_id": f"promo-{uuid.uuid4().hex}"})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


async def test_validation_errors_name_the_field(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/promotions", json={"name": "x", "kind": "percent_off"})
    assert r.status_code == 422 and "percent" in r.text
    r = await api.post("/v1/promotions", json={"name": "x", "kind": "tiered", "tiers": [
        {"threshold": 100, "amount": 50}, {"threshold": 50, "amount": 60}]})
    assert r.status_code == 422 and "tiers[1]" in r.text
    r = await api.post("/v1/promotions", json={"name": "x", "kind": "amount_off", "amount": 1, "condition": "cart.("})
    assert r.status_code == 422 and "condition" in r.text
    r = await api.post("/v1/promotions", json={"name": "x", "kind": "amount_off", "amount": 1,
                                               "exclusivity": "group"})
    assert r.status_code == 422 and "stacking_group" in r.text
    assert (await api.get("/v1/promotions", params={"limit": 1})).status_code == 200


async def test_a_quote_prices_allocates_and_explains(api: httpx.AsyncClient) -> None:
    sku = _sku()
    full = await _promotion(api, kind="amount_off", threshold=10_000, amount=1_000, scope={"skus": [sku]},
                            stacking_group=sku, exclusivity="group")
    better = await _promotion(api, kind="amount_off", threshold=10_000, amount=1_500, scope={"skus": [sku]},
                              stacking_group=sku, exclusivity="group")
    r = await api.post("/v1/pricing/quote", json={
        "lines": [{"sku": sku, "unit_price": 3_333, "quantity": 3}, {"sku": sku, "unit_price": 1, "quantity": 1}],
        "coupons": ["NOPE-NOPE-NOPE-1"]})
    assert r.status_code == 200, r.text
    q = r.json()
    assert q["total"] == 10_000 - 1_500
    assert [a["promotion_id"] for a in q["applied"]] == [better["id"]]
    assert sum(q["applied"][0]["lines"]) == 1_500
    reasons = {(n["promotion_id"], n["reason"], n["coupon_code"]) for n in q["not_applied"]}
    assert (full["id"], "excluded_by", None) in reasons
    assert (None, "coupon_invalid", "NOPE-NOPE-NOPE-1") in reasons


async def test_paused_promotions_stop_applying_at_once(api: httpx.AsyncClient) -> None:
    sku = _sku()
    promo = await _promotion(api, kind="percent_off", percent=10, scope={"skus": [sku]})
    cart = {"lines": [{"sku": sku, "unit_price": 1_000, "quantity": 1}]}
    assert (await api.post("/v1/pricing/quote", json=cart)).json()["total"] == 900
    r = await api.patch(f"/v1/promotions/{promo['id']}", json={"status": "paused"})
    assert r.status_code == 200, r.text
    assert (await api.post("/v1/pricing/quote", json=cart)).json()["total"] == 1_000


async def test_coupon_issue_quote_order_replay_and_confirm(api: httpx.AsyncClient, worker: None) -> None:
    sku = _sku()
    template = (await api.post("/v1/coupon-templates", json={"name": "t", "valid_days": 7, "stock": 5})).json()
    await _promotion(api, kind="amount_off", amount=500, coupon_template_id=template["id"], scope={"skus": [sku]})
    contact = await _contact(api)
    r = await api.post("/v1/coupons", json={"template_id": template["id"], "contact_id": contact, "reference": "c1"})
    assert r.status_code == 201, r.text
    code = r.json()["code"]
    assert (await api.post("/v1/coupons", json={"template_id": template["id"], "contact_id": contact,
                                                "reference": "c1"})).json()["code"] == code
    body = {"order_id": f"o-{uuid.uuid4().hex[:8]}", "contact_id": contact, "coupons": [code],
            "lines": [{"sku": sku, "unit_price": 2_000, "quantity": 1}]}
    first = await api.post("/v1/orders", json=body)
    assert first.status_code == 201, first.text
    assert first.json()["total"] == 1_500 and first.json()["workflow_id"] == f"order:{body['order_id']}"
    replay = await api.post("/v1/orders", json=body)
    assert replay.status_code == 200 and replay.json() == first.json()
    different = await api.post("/v1/orders", json={**body, "coupons": []})
    assert different.status_code == 409
    assert (await api.get(f"/v1/coupons/{code}")).json()["state"] == "reserved"
    r = await api.post(f"/v1/orders/{body['order_id']}/confirm")
    assert r.status_code == 200 and r.json()["status"] == "confirmed"
    assert (await api.post(f"/v1/orders/{body['order_id']}/cancel")).status_code == 409
    assert (await api.get(f"/v1/coupons/{code}")).json()["state"] == "redeemed"


async def test_cancel_releases_the_coupon(api: httpx.AsyncClient, worker: None) -> None:
    sku = _sku()
    template = (await api.post("/v1/coupon-templates", json={"name": "t", "valid_days": 7})).json()
    await _promotion(api, kind="amount_off", amount=500, coupon_template_id=template["id"], scope={"skus": [sku]})
    contact = await _contact(api)
    code = (await api.post("/v1/coupons", json={"template_id": template["id"], "contact_id": contact,
                                                "reference": "c2"})).json()["code"]
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    r = await api.post("/v1/orders", json={"order_id": order_id, "contact_id": contact, "coupons": [code],
                                           "lines": [{"sku": sku, "unit_price": 2_000, "quantity": 1}]})
    assert r.status_code == 201, r.text
    r = await api.post(f"/v1/orders/{order_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert (await api.get(f"/v1/coupons/{code}")).json()["state"] == "issued"
    r = await api.post(f"/v1/coupons/{code}/revoke")
    assert r.status_code == 200 and r.json()["state"] == "revoked"


async def test_bulk_codes_are_streamed(api: httpx.AsyncClient) -> None:
    template = (await api.post("/v1/coupon-templates", json={"name": "bulk"})).json()
    r = await api.post(f"/v1/coupon-templates/{template['id']}/codes", json={"count": 250, "batch": "b"})
    assert r.status_code == 201, r.text
    codes = r.text.split()
    assert len(set(codes)) == 250
    assert (await api.get(f"/v1/coupons/{codes[0]}")).json()["template_id"] == template["id"]


async def test_orders_are_listed_newest_first_a_page_at_a_time(api: httpx.AsyncClient, worker: None) -> None:
    sku = _sku()
    contact = await _contact(api)
    placed = []
    for n in range(3):
        order_id = f"o-{uuid.uuid4().hex[:8]}-{n}"
        r = await api.post("/v1/orders", json={"order_id": order_id, "contact_id": contact,
                                               "lines": [{"sku": sku, "unit_price": 1_000, "quantity": 1}]})
        assert r.status_code == 201, r.text
        placed.append(order_id)
    await api.post(f"/v1/orders/{placed[0]}/cancel")
    first = (await api.get("/v1/orders", params={"contact_id": contact, "limit": 2})).json()
    assert [o["order_id"] for o in first["items"]] == placed[:0:-1] and first["next_before"] == placed[1]
    rest = (await api.get("/v1/orders", params={"contact_id": contact, "before": first["next_before"]})).json()
    assert [o["order_id"] for o in rest["items"]] == [placed[0]] and rest["next_before"] is None
    cancelled = (await api.get("/v1/orders", params={"contact_id": contact, "status": "cancelled"})).json()
    assert [o["order_id"] for o in cancelled["items"]] == [placed[0]]
    r = await api.get("/v1/orders", params={"before": "no-such-order"})
    assert r.status_code == 422 and "before" in r.text
