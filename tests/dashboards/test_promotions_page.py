"""The promotions page shows a promotion's usage, discount cost and stock left, and a coupon template's issue →
redeem rate, as the tables say after a confirmed order."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import httpx

SignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def test_promotions_page_shows_usage_cost_redeem_rate_and_stock(
        api: httpx.AsyncClient, api_url: str, admin_key: str, dashboard_sign_in: SignIn, worker: None) -> None:
    sku = f"dash-{uuid.uuid4().hex[:8]}"
    template = (await api.post("/v1/coupon-templates", json={"name": f"tpl {sku}", "stock": 10})).json()
    promotion = (await api.post("/v1/promotions", json={
        "name": f"promo {sku}", "kind": "amount_off", "amount": 300, "coupon_template_id": template["id"],
        "scope": {"skus": [sku]}, "stock": 5})).json()
    contact = (await api.post("/v1/contacts", json={"user_id": sku})).json()["id"]
    codes = [(await api.post("/v1/coupons", json={"template_id": template["id"], "contact_id": contact,
                                                  "reference": f"r{n}"})).json()["code"] for n in range(4)]
    order = {"order_id": f"o-{sku}", "contact_id": contact, "coupons": [codes[0]],
             "lines": [{"sku": sku, "unit_price": 1_000, "quantity": 1}]}
    assert (await api.post("/v1/orders", json=order)).status_code == 201
    assert (await api.post(f"/v1/orders/o-{sku}/confirm")).status_code == 200
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as browser:
        assert (await browser.get("/dashboards/promotions")).status_code in (303, 307)
        await dashboard_sign_in(browser, admin_key)
        page = await browser.get("/dashboards/promotions")
    assert page.status_code == 200
    html = re.sub(r"\s+", " ", page.text)
    assert re.search(rf"<td>{promotion['id']}</td><td>promo {sku}</td><td>amount_off</td><td>active</td> "
                     r'<td class="num">1</td><td class="num">300</td> <td class="num">4 / 5</td>', html), html
    assert re.search(rf"<td>{template['id']}</td><td>tpl {sku}</td><td class=\"num\">4</td> "
                     r'<td class="num">0</td><td class="num">1</td> <td class="num">25.0%</td>', html), html
