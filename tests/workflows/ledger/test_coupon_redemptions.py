"""Coupons bought with points (real API, Temporal and Postgres): a coupon reward's redemption debits the points
once and issues its coupon once (usable in a quote and an order, listed with its source), a failure after the
issuance takes everything back, a replay of the same order issues nothing new, a template with no coupons left
fails the order with the points returned, and racing orders never oversell the reward or the template."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Replayer

from store.db import transaction
from store.ledger.redemptions import open_redemption
from workflows.ledger.redemptions import TASK_QUEUE, RedemptionInput, RedemptionWorkflow, workflow_id

COST = 100


def _tag() -> str:
    return uuid.uuid4().hex[:8]


class Shop:
    """A program, a coupon template worth ¥5 off through a coupon promotion, and a coupon reward of it."""

    def __init__(self, program: int, template: int, reward: int, sku: str) -> None:
        self.program, self.template, self.reward, self.sku = program, template, reward, sku


async def _shop(api: httpx.AsyncClient, *, stock: int, template_stock: int | None = None) -> Shop:
    program = (await api.post("/v1/ledger/programs", json={"name": f"c-{_tag()}"})).json()["id"]
    r = await api.post("/v1/coupon-templates", json={"name": f"t-{_tag()}", "valid_days": 30,
                                                     "stock": template_stock})
    assert r.status_code == 201, r.text
    template = r.json()["id"]
    sku = f"sku-{_tag()}"
    r = await api.post("/v1/promotions", json={"name": "¥5 coupon", "kind": "amount_off", "amount": 500,
                                               "coupon_template_id": template, "scope": {"skus": [sku]}})
    assert r.status_code == 201, r.text
    r = await api.post("/v1/ledger/rewards", json={"program_id": program, "name": "¥5 coupon", "cost": COST,
                                                   "stock": stock, "kind": "coupon", "coupon_template_id": template})
    assert r.status_code == 201, r.text
    assert (r.json()["kind"], r.json()["coupon_template_id"]) == ("coupon", template)
    return Shop(program, template, r.json()["id"], sku)


async def _contact(api: httpx.AsyncClient, program: int, points: int) -> int:
    contact = (await api.post("/v1/contacts", json={"user_id": f"buyer-{_tag()}"})).json()["id"]
    r = await api.post("/v1/ledger/postings", json={"program_id": program, "reference": f"seed:{contact}",
                                                    "kind": "credit", "contact_id": contact, "amount": points})
    assert r.status_code == 201, r.text
    return int(contact)


async def _settled(api: httpx.AsyncClient, order: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = (await api.get(f"/v1/redemptions/{order}")).json()
        if body["status"] != "pending":
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order} did not settle: {body}")


async def _balance(api: httpx.AsyncClient, program: int, contact: int) -> tuple[int, int]:
    account = (await api.get(f"/v1/ledger/accounts/{contact}", params={"program_id": program})).json()
    return account["balance"], account["held"]


async def _stock(api: httpx.AsyncClient, shop: Shop) -> tuple[int, int | None]:
    """(reward units left, template coupons left)."""
    reward = (await api.get(f"/v1/ledger/rewards/{shop.reward}")).json()
    template = (await api.get(f"/v1/coupon-templates/{shop.template}")).json()
    return reward["stock"], template["stock_left"]


async def _coupons(sessions: async_sessionmaker[AsyncSession], template: int) -> list[Any]:
    async with sessions() as s:
        return list(await s.execute(text("SELECT code, contact_id, state, reference FROM coupons "
                                          "WHERE template_id = :t ORDER BY id"), {"t": template}))


async def _debits(sessions: async_sessionmaker[AsyncSession], program: int, order: str) -> list[str]:
    """The order's postings that moved points (the hold and its commit or void)."""
    async with sessions() as s:
        return list((await s.scalars(text("SELECT reference FROM ledger_postings WHERE program_id = :p "
                                          "AND starts_with(reference, :r) ORDER BY reference"),
                                     {"p": program, "r": f"redeem:{order}:"})).all())


async def test_a_coupon_reward_debits_once_issues_once_and_the_coupon_is_usable(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await _shop(api, stock=3, template_stock=10)
    contact = await _contact(api, shop.program, 500)
    order = f"o-{_tag()}"
    body = {"order_id": order, "contact_id": contact, "reward_id": shop.reward}
    assert (await api.post("/v1/redemptions", json=body)).status_code == 202
    done = await _settled(api, order)
    assert done["status"] == "completed", done
    (code,) = done["coupon_codes"]
    again = await api.post("/v1/redemptions", json=body)
    assert again.status_code == 200 and again.json()["coupon_codes"] == [code]

    assert await _balance(api, shop.program, contact) == (500 - COST, 0)
    assert await _debits(sessions, shop.program, order) == [f"redeem:{order}:commit", f"redeem:{order}:hold"]
    assert await _stock(api, shop) == (2, 9)
    listed = (await api.get("/v1/coupons", params={"contact_id": contact})).json()["items"]
    assert [(c["template_id"], c["state"], c["source"], c["reference"]) for c in listed] == \
        [(shop.template, "issued", "points", f"redeem:{order}#0")]
    assert (await api.get(f"/v1/coupons/{code}")).json()["source"] == "points"

    cart = {"contact_id": contact, "coupons": [code], "lines": [{"sku": shop.sku, "unit_price": 2_000,
                                                                 "quantity": 1}]}
    quote = (await api.post("/v1/pricing/quote", json=cart)).json()
    assert quote["total"] == 1_500, quote
    r = await api.post("/v1/orders", json=cart | {"order_id": f"buy-{_tag()}"})
    assert r.status_code == 201 and r.json()["total"] == 1_500, r.text
    assert (await api.get(f"/v1/coupons/{code}")).json()["state"] == "reserved"
    history = await temporal_client.get_workflow_handle(workflow_id(order)).fetch_history()
    await Replayer(workflows=[RedemptionWorkflow]).replay_workflow(history)


@pytest.mark.parametrize("step", ["fulfil", "commit_hold"])
async def test_a_failure_after_the_issue_takes_back_the_coupon_the_stock_and_the_points(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
        step: str) -> None:
    shop = await _shop(api, stock=3, template_stock=10)
    contact = await _contact(api, shop.program, 500)
    order = f"o-{_tag()}"
    values = {"order_id": order, "program_id": shop.program, "contact_id": contact, "reward_id": shop.reward,
              "quantity": 2, "points": 2 * COST}
    async with transaction(sessions) as s:
        await open_redemption(s, values)
    status = await temporal_client.execute_workflow(
        RedemptionWorkflow.run, RedemptionInput(**values, coupon_template_id=shop.template, fail_at=[step]),
        id=workflow_id(order), task_queue=TASK_QUEUE)
    assert status == "failed"
    done = await _settled(api, order)
    assert done["failure"].startswith("injected failure") and len(done["coupon_codes"]) == 2
    coupons = await _coupons(sessions, shop.template)
    assert [(c.state, c.reference) for c in coupons] == [("revoked", f"redeem:{order}#0"),
                                                         ("revoked", f"redeem:{order}#1")]
    assert await _balance(api, shop.program, contact) == (500, 0)
    assert await _stock(api, shop) == (3, 10)
    # The compensation again (a retry after a crash) gives nothing back twice.
    await temporal_client.execute_workflow(
        RedemptionWorkflow.run, RedemptionInput(**values, coupon_template_id=shop.template, fail_at=[step]),
        id=workflow_id(order), task_queue=TASK_QUEUE)
    assert await _stock(api, shop) == (3, 10)
    assert await _balance(api, shop.program, contact) == (500, 0)


async def test_a_replayed_order_issues_nothing_new(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await _shop(api, stock=3, template_stock=10)
    contact = await _contact(api, shop.program, 500)
    order = f"o-{_tag()}"
    assert (await api.post("/v1/redemptions", json={"order_id": order, "contact_id": contact,
                                                    "reward_id": shop.reward})).status_code == 202
    first = await _settled(api, order)
    assert first["status"] == "completed"
    # Every step again under the same order id, as a worker that lost its history would run them — once the first
    # run has closed (the order reads completed a moment before its workflow ends).
    await temporal_client.get_workflow_handle(workflow_id(order)).result()
    replay = RedemptionInput(order_id=order, program_id=shop.program, contact_id=contact, reward_id=shop.reward,
                             quantity=1, points=COST, coupon_template_id=shop.template)
    assert await temporal_client.execute_workflow(RedemptionWorkflow.run, replay, id=workflow_id(order),
                                                  task_queue=TASK_QUEUE) == "completed"
    assert (await _settled(api, order))["coupon_codes"] == first["coupon_codes"]
    assert [(c.state, c.reference) for c in await _coupons(sessions, shop.template)] == \
        [("issued", f"redeem:{order}#0")]
    assert await _balance(api, shop.program, contact) == (500 - COST, 0)
    assert await _stock(api, shop) == (2, 9)


async def test_a_template_with_no_coupons_left_fails_the_order_with_the_points_returned(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession]) -> None:
    shop = await _shop(api, stock=3, template_stock=0)
    contact = await _contact(api, shop.program, 500)
    order = f"o-{_tag()}"
    assert (await api.post("/v1/redemptions", json={"order_id": order, "contact_id": contact,
                                                    "reward_id": shop.reward})).status_code == 202
    done = await _settled(api, order)
    assert done["status"] == "failed" and "no coupons left" in done["failure"], done
    assert done["coupon_codes"] == []
    assert await _balance(api, shop.program, contact) == (500, 0)
    assert await _stock(api, shop) == (3, 0)
    assert await _coupons(sessions, shop.template) == []


@pytest.mark.parametrize(("stock", "template_stock", "winners", "failure"),
                         [(3, None, 3, "out of stock"), (8, 2, 2, "no coupons left")])
async def test_racing_orders_never_oversell_the_reward_or_the_template(
        api: httpx.AsyncClient, worker: None, sessions: async_sessionmaker[AsyncSession], stock: int,
        template_stock: int | None, winners: int, failure: str) -> None:
    shop = await _shop(api, stock=stock, template_stock=template_stock)
    buyers = [await _contact(api, shop.program, 300) for _ in range(7)]
    orders = [f"o-{_tag()}" for _ in buyers]
    posted = await asyncio.gather(*[api.post("/v1/redemptions", json={
        "order_id": o, "contact_id": c, "reward_id": shop.reward}) for o, c in zip(orders, buyers, strict=True)])
    assert [r.status_code for r in posted] == [202] * len(buyers)
    done = [await _settled(api, o) for o in orders]
    won = [d for d in done if d["status"] == "completed"]
    lost = [d for d in done if d["status"] != "completed"]
    assert len(won) == winners, done
    assert all(d["status"] == "failed" and failure in d["failure"] for d in lost), lost
    coupons = await _coupons(sessions, shop.template)
    assert sorted(c.contact_id for c in coupons if c.state == "issued") == sorted(d["contact_id"] for d in won)
    assert len({c.code for c in coupons}) == len(coupons)
    for d in done:
        expected = 300 - COST if d["status"] == "completed" else 300
        assert await _balance(api, shop.program, d["contact_id"]) == (expected, 0)
    assert await _stock(api, shop) == (stock - winners, None if template_stock is None else template_stock - winners)


async def test_a_coupon_used_before_the_compensation_stays_and_the_order_says_so(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, sessions: async_sessionmaker[AsyncSession]
) -> None:
    shop = await _shop(api, stock=3, template_stock=10)
    contact = await _contact(api, shop.program, 500)
    order = f"o-{_tag()}"
    values = {"order_id": order, "program_id": shop.program, "contact_id": contact, "reward_id": shop.reward,
              "quantity": 1, "points": COST}
    async with transaction(sessions) as s:
        await open_redemption(s, values)
    # Committing the hold keeps failing (retryable), so the order waits there with its coupon issued.
    handle = await temporal_client.start_workflow(
        RedemptionWorkflow.run, RedemptionInput(**values, coupon_template_id=shop.template,
                                                fail_at=["commit_hold:retry"]),
        id=workflow_id(order), task_queue=TASK_QUEUE)
    for _ in range(100):
        codes = (await api.get(f"/v1/redemptions/{order}")).json()["coupon_codes"]
        if codes:
            break
        await asyncio.sleep(0.1)
    (code,) = codes
    cart = {"order_id": f"buy-{_tag()}", "contact_id": contact, "coupons": [code],
            "lines": [{"sku": shop.sku, "unit_price": 2_000, "quantity": 1}]}
    assert (await api.post("/v1/orders", json=cart)).status_code == 201
    assert (await api.post(f"/v1/orders/{cart['order_id']}/confirm")).json()["status"] == "confirmed"
    await handle.cancel()
    done = await _settled(api, order)
    assert done["status"] == "cancelled", done
    assert done["failure"] == f"cancelled; coupon(s) {code} already redeemed: not taken back"
    assert (await api.get(f"/v1/coupons/{code}")).json()["state"] == "redeemed"
    assert await _balance(api, shop.program, contact) == (500, 0)
    assert await _stock(api, shop) == (3, 9)
