"""Rewards catalogue with stock that never oversells, and redemption orders (one row per order id): placing an
order screens it with the risk controls and records it pending; the redemption saga (workflows/ledger/redemptions.py)
does the rest.

A reward's stock is the shared inventory's subject `reward:{id}` (store/inventory/stock.py, the same rows and rules
as the promotions' stock), held by `redemption:{order_id}`: the saga reserves it, fulfilling commits it, and a
compensation releases what is reserved or gives back what was committed — each exactly once.

A reward is an `item` (the stock is all there is to fulfil) or a `coupon` of a coupon template: the saga then issues
the coupons too (store/promotions/purchases.py, a layer above, keeps them on the order with `set_coupon_codes`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, DomainError, NotFound
from domain.ledger.risk import Verdict, refusal
from store.inventory import stock as inventory
from store.ledger.programs import get_program
from store.ledger.risk import screen

# The saga settles its own reservations (a compensation always runs); the expiry only bounds a forgotten one.
HOLD = timedelta(days=30)


class OutOfStock(DomainError):
    status = 409
    title = "Out of stock"


@dataclass(frozen=True)
class Reward:
    id: int
    program_id: int
    name: str
    cost: int
    stock: int
    kind: str = "item"  # item | coupon
    coupon_template_id: int | None = None


def reward_subject(reward_id: int) -> str:
    return f"reward:{reward_id}"


def holder(order_id: str) -> str:
    return f"redemption:{order_id}"


# A reward with its stock left (its inventory row; none: nothing to redeem).
REWARDS = """
    SELECT r.id, r.program_id, r.name, r.cost, coalesce(s.total - s.reserved - s.used, 0) AS stock, r.kind,
           r.coupon_template_id
    FROM ledger_rewards r LEFT JOIN promotion_stock s ON s.subject = 'reward:' || r.id
"""


async def create_reward(session: AsyncSession, *, program_id: int, name: str, cost: int, stock: int,
                        coupon_template_id: int | None = None) -> Reward:
    """Add a reward to a program's catalogue (the program must exist), with `stock` units in the inventory; with a
    coupon template, a `coupon` reward (the caller checked the template: store/promotions/purchases.py)."""
    await get_program(session, program_id)
    kind = "item" if coupon_template_id is None else "coupon"
    reward_id = int(await session.scalar(text("""
        INSERT INTO ledger_rewards (program_id, name, cost, kind, coupon_template_id) VALUES (:p, :n, :c, :k, :t)
        RETURNING id
    """), {"p": program_id, "n": name, "c": cost, "k": kind, "t": coupon_template_id}) or 0)
    await inventory.set_total(session, reward_subject(reward_id), stock)
    return Reward(reward_id, program_id, name, cost, stock, kind, coupon_template_id)


async def get_reward(session: AsyncSession, reward_id: int) -> Reward:
    row = (await session.execute(text(REWARDS + " WHERE r.id = :i"), {"i": reward_id})).one_or_none()
    if row is None:
        raise NotFound(f"reward {reward_id} does not exist")
    return Reward(*row)


async def list_rewards(session: AsyncSession, *, program_id: int | None, in_stock: bool | None, after: int | None,
                       limit: int) -> list[Reward]:
    """The catalogue in id order, a page after `after`, optionally one program's or only what is (not) in stock."""
    rows = await session.execute(text(REWARDS + """
        WHERE (CAST(:p AS bigint) IS NULL OR r.program_id = :p)
          AND (CAST(:s AS boolean) IS NULL OR (coalesce(s.total - s.reserved - s.used, 0) > 0) = :s)
          AND (CAST(:a AS bigint) IS NULL OR r.id > :a)
        ORDER BY r.id LIMIT :limit
    """), {"p": program_id, "s": in_stock, "a": after, "limit": limit})
    return [Reward(*r) for r in rows]


async def reserve(session: AsyncSession, order_id: str, reward_id: int, quantity: int) -> None:
    """Take stock for an order once; a second call for the same order changes nothing."""
    try:
        counted = await inventory.reserve(session, holder(order_id), reward_subject(reward_id), quantity,
                                      expires_at=datetime.now(UTC) + HOLD)
    except inventory.OutOfStock:
        counted = False
    if not counted:
        reward = await get_reward(session, reward_id)
        short = f" for {quantity}: {reward.stock} left" if reward.stock else ""
        raise OutOfStock(f"reward {reward_id} ({reward.name}) is out of stock{short}") from None


async def release(session: AsyncSession, order_id: str) -> int:
    """Give an order's stock back (reserved, or fulfilled and being compensated), once."""
    return await inventory.release(session, holder(order_id)) + await inventory.give_back(session, holder(order_id))


async def fulfil(session: AsyncSession, order_id: str) -> None:
    await inventory.commit(session, holder(order_id))


@dataclass(frozen=True)
class Redemption:
    order_id: str
    program_id: int
    contact_id: int
    reward_id: int
    quantity: int
    points: int
    status: str
    failure: str | None
    created_at: datetime
    updated_at: datetime
    coupon_codes: list[str] | None = None  # a coupon reward's codes once issued (as shown to the contact)
    coupon_template_id: int | None = None  # the reward's: a coupon reward


async def open_redemption(session: AsyncSession, values: dict[str, Any]) -> tuple[Redemption, bool]:
    """Record an order (pending); the same order id again returns it, or 409 if its content differs."""
    created = await session.scalar(text("""
        INSERT INTO ledger_redemptions (order_id, program_id, contact_id, reward_id, quantity, points, status)
        VALUES (:order_id, :program_id, :contact_id, :reward_id, :quantity, :points, 'pending')
        ON CONFLICT (order_id) DO NOTHING RETURNING 1
    """), values)
    order = await get_redemption(session, values["order_id"])
    same = all(getattr(order, k) == v for k, v in values.items())
    if not same:
        raise Conflict(f"order {values['order_id']!r} already exists with different content")
    return order, bool(created)


async def place_order(session: AsyncSession, *, order_id: str, reward_id: int, contact_id: int, quantity: int,
                      device: str | None, ip: str | None, now: datetime) -> tuple[Redemption, bool]:
    """Screen a new order with the risk controls (refused: raises) and record it pending. The same order id again
    returns the order as it is, not screened twice (`created` False), or 409 if its content differs."""
    reward = await get_reward(session, reward_id)
    values = {"order_id": order_id, "program_id": reward.program_id, "contact_id": contact_id,
              "reward_id": reward.id, "quantity": quantity, "points": reward.cost * quantity}
    if not await order_exists(session, order_id):
        verdict, reason = await screen(session, program_id=reward.program_id, action="redeem", contact_id=contact_id,
                                       device=device, ip=ip, amount=values["points"], reference=f"redeem:{order_id}",
                                       now=now)
        if verdict is not Verdict.ALLOW:
            raise refusal(reason)
    return await open_redemption(session, values)


# An order with its reward's coupon template (none: an item reward).
ORDERS = """
    SELECT r.*, w.coupon_template_id FROM ledger_redemptions r JOIN ledger_rewards w ON w.id = r.reward_id
"""


async def order_exists(session: AsyncSession, order_id: str) -> bool:
    return bool(await session.scalar(text("SELECT 1 FROM ledger_redemptions WHERE order_id = :o"), {"o": order_id}))


async def get_redemption(session: AsyncSession, order_id: str) -> Redemption:
    row = (await session.execute(text(ORDERS + " WHERE r.order_id = :o"), {"o": order_id})).one_or_none()
    if row is None:
        raise NotFound(f"order {order_id!r} does not exist")
    return Redemption(**row._mapping)


async def list_redemptions(session: AsyncSession, *, program_id: int | None, status: str | None,
                           contact_id: int | None, before: str | None, limit: int) -> list[Redemption]:
    """Orders newest first, a page older than the order `before`, optionally filtered (indexes of migration 0013)."""
    if before is not None and not await order_exists(session, before):
        raise DomainError(f"`before` names order {before!r}, which does not exist; pass the `next_before` of a page")
    rows = await session.execute(text(ORDERS + """
        WHERE (CAST(:p AS bigint) IS NULL OR r.program_id = :p) AND (CAST(:s AS text) IS NULL OR r.status = :s)
          AND (CAST(:c AS bigint) IS NULL OR r.contact_id = :c)
          AND (CAST(:b AS text) IS NULL OR (r.created_at, r.order_id)
               < (SELECT created_at, order_id FROM ledger_redemptions WHERE order_id = :b))
        ORDER BY r.created_at DESC, r.order_id DESC LIMIT :limit
    """), {"p": program_id, "s": status, "c": contact_id, "b": before, "limit": limit})
    return [Redemption(**r._mapping) for r in rows]


async def set_status(session: AsyncSession, order_id: str, status: str, failure: str | None) -> None:
    await session.execute(text("""
        UPDATE ledger_redemptions SET status = :s, failure = :f, updated_at = now() WHERE order_id = :o
    """), {"o": order_id, "s": status, "f": failure})


async def set_coupon_codes(session: AsyncSession, order_id: str, codes: list[str]) -> None:
    """Keep the codes of the coupons a coupon reward's order was given (issued in the same transaction)."""
    await session.execute(text("""
        UPDATE ledger_redemptions SET coupon_codes = :c, updated_at = now() WHERE order_id = :o
    """), {"o": order_id, "c": codes})
