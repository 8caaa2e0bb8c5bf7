"""The rewards catalogue and redemption orders are listed, keyset-paged and filtered, so an operator can find an
order without knowing its id."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.ledger.redemptions import open_redemption, set_status


async def _program(api: httpx.AsyncClient) -> int:
    r = await api.post("/v1/ledger/programs", json={"name": f"cat-{uuid.uuid4().hex[:8]}"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _reward(api: httpx.AsyncClient, program: int, name: str, stock: int) -> int:
    r = await api.post("/v1/ledger/rewards", json={"program_id": program, "name": name, "cost": 100, "stock": stock})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def _all(api: httpx.AsyncClient, path: str, cursor: str, params: dict) -> tuple[list[dict], int]:
    """Every item, page by page; and how many pages that took."""
    items, pages, page = [], 0, dict(params)
    while True:
        r = await api.get(path, params=page)
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        pages += 1
        if r.json()[f"next_{cursor}"] is None:
            return items, pages
        page[cursor] = r.json()[f"next_{cursor}"]


async def test_the_rewards_catalogue_is_listed_by_program_in_pages(api: httpx.AsyncClient) -> None:
    program, other = await _program(api), await _program(api)
    mug, cap, pen = [await _reward(api, program, name, stock) for name, stock in (("Mug", 3), ("Cap", 0), ("Pen", 9))]
    await _reward(api, other, "Elsewhere", 1)
    items, pages = await _all(api, "/v1/ledger/rewards", "after", {"program_id": program, "limit": 2})
    assert [(r["id"], r["name"], r["stock"]) for r in items] == [(mug, "Mug", 3), (cap, "Cap", 0), (pen, "Pen", 9)]
    assert pages == 2
    in_stock, _ = await _all(api, "/v1/ledger/rewards", "after", {"program_id": program, "in_stock": "true"})
    assert [r["id"] for r in in_stock] == [mug, pen]
    assert (await api.get("/v1/ledger/rewards", params={"limit": 0})).status_code == 422


async def test_redemption_orders_are_listed_newest_first_filtered_by_program_status_and_contact(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    program, other = await _program(api), await _program(api)
    reward, elsewhere = await _reward(api, program, "Mug", 10), await _reward(api, other, "Cap", 10)
    tag = uuid.uuid4().hex[:6]
    placed = [(f"{tag}-{n}", program if n != 4 else other, reward if n != 4 else elsewhere, 1 + n % 2,
               ("completed", "failed", "pending")[n % 3]) for n in range(6)]
    for order, prog, rew, contact, status in placed:  # one transaction each: created_at increases
        async with transaction(sessions) as s:
            await open_redemption(s, {"order_id": order, "program_id": prog, "contact_id": contact,
                                      "reward_id": rew, "quantity": 1, "points": 100})
            if status != "pending":
                await set_status(s, order, status, "out of stock" if status == "failed" else None)
    mine = [p for p in placed if p[1] == program]

    items, pages = await _all(api, "/v1/redemptions", "before", {"program_id": program, "limit": 2})
    assert [r["order_id"] for r in items] == [p[0] for p in reversed(mine)]
    assert pages == 3
    assert items[0]["workflow_id"] == f"redeem:{mine[-1][0]}"
    failed, _ = await _all(api, "/v1/redemptions", "before", {"program_id": program, "status": "failed"})
    assert [r["order_id"] for r in failed] == [p[0] for p in reversed(mine) if p[4] == "failed"]
    assert all(r["failure"] == "out of stock" for r in failed)
    by_contact, _ = await _all(api, "/v1/redemptions", "before", {"program_id": program, "contact_id": 2})
    assert [r["order_id"] for r in by_contact] == [p[0] for p in reversed(mine) if p[3] == 2]

    assert (await api.get("/v1/redemptions", params={"status": "lost"})).status_code == 422
    unknown = await api.get("/v1/redemptions", params={"before": f"{tag}-nope"})
    assert unknown.status_code == 422 and "does not exist" in unknown.json()["detail"]
