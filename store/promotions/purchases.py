"""Coupons bought with points: the ledger's rewards of kind `coupon` (checked against their template here, a layer
above the ledger), and the redemption saga's coupon steps — issue an order's coupons under references derived from
its order id, and take them back when the order is compensated."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError, NotFound
from domain.promotions.coupons import display, purchase_reference
from store.ledger import redemptions
from store.promotions.coupons import issue_coupon, take_back
from store.promotions.promotions import get_template


async def create_reward(session: AsyncSession, *, program_id: int, name: str, cost: int, stock: int,
                        kind: str = "item", coupon_template_id: int | None = None) -> redemptions.Reward:
    """Add a reward to a program's catalogue; a `coupon` reward names an active coupon template (422 otherwise,
    naming `coupon_template_id`)."""
    if kind == "coupon":
        if coupon_template_id is None:
            raise DomainError("coupon_template_id: a coupon reward needs the coupon template it issues")
        try:
            template = await get_template(session, coupon_template_id)
        except NotFound as exc:
            raise DomainError(f"coupon_template_id: {exc}") from exc
        if template.status != "active":
            raise DomainError(f"coupon_template_id: coupon template {template.id} is {template.status}, not active")
    elif coupon_template_id is not None:
        raise DomainError("coupon_template_id: only a coupon reward names a coupon template")
    return await redemptions.create_reward(session, program_id=program_id, name=name, cost=cost, stock=stock,
                                           coupon_template_id=coupon_template_id)


def references(order: redemptions.Redemption) -> list[str]:
    return [purchase_reference(order.order_id, i) for i in range(order.quantity)]


async def issue_for_order(session: AsyncSession, order_id: str, *, now: datetime) -> list[str]:
    """The order's coupons, one per unit, each issued once under `redeem:{order_id}#{i}` (a retried or replayed step
    gets the coupons issued the first time), kept on the order. A refusal (template archived or past its validity,
    no coupons left, the contact's limit) raises and, in the caller's transaction, leaves none issued."""
    order = await redemptions.get_redemption(session, order_id)
    if order.coupon_template_id is None:
        return []
    codes = [display((await issue_coupon(session, order.coupon_template_id, order.contact_id, ref, now=now)).code)
             for ref in references(order)]
    await redemptions.set_coupon_codes(session, order_id, codes)
    return codes


async def take_back_for_order(session: AsyncSession, order_id: str) -> list[str]:
    """Compensation: revoke the order's coupons and return them to the template's stock, idempotently (none issued:
    nothing to do). A coupon already redeemed stays with the contact: returns the codes of those."""
    order = await redemptions.get_redemption(session, order_id)
    if order.coupon_template_id is None:
        return []
    states = await take_back(session, order.coupon_template_id, references(order))
    codes = order.coupon_codes or []
    return [code for code, ref in zip(codes, references(order), strict=False) if states.get(ref) == "redeemed"]
