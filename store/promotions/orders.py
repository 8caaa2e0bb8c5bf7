"""Quotes and orders: the facts a quote needs (one query each, none for the rule set), and orders that lock a
quote — seed 004's soft transaction bound to an order id.

Placing an order prices the cart and, in the same transaction, reserves the coupons it uses, one unit of each
applied promotion's stock and its discount from the promotion's budget, and holds the points it pays with on the
ledger (`order:{order_id}:points`). Confirming redeems, commits and commits the hold; cancelling or expiring
releases and voids. Each of the three is a guarded status change (`WHERE status = 'pending'`), so exactly one of
a racing confirm and expiry wins and every compensation runs once however often it is retried. The same order id
with the same body returns the same order; with a different body, 409.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict, NotFound
from domain.ledger.postings import HoldNotPending, Kind, Request
from domain.promotions.model import Cart, Contact, Line, Points, Usage
from domain.promotions.pricing import Quote, quote
from store.ledger.accounts import post
from store.promotions import coupons, inventory
from store.promotions.cache import RuleSet

GRACE_SECONDS = 300  # reservations and holds outlive the order's own timeout, so the workflow releases them first


@dataclass(frozen=True)
class QuoteRequest:
    lines: tuple[Line, ...]
    contact_id: int | None = None
    coupons: tuple[str, ...] = ()
    points: int = 0
    shipping: int = 0
    channel: str = ""


@dataclass(frozen=True)
class Order:
    order_id: str
    contact_id: int | None
    status: str
    quote: dict[str, Any]
    subtotal: int
    discount: int
    total: int
    points_used: int
    program_id: int | None
    expires_at: datetime
    created_at: datetime
    updated_at: datetime


async def _contact(session: AsyncSession, contact_id: int | None, now: datetime) -> Contact:
    if contact_id is None:
        return Contact()
    row = (await session.execute(text("""
        SELECT c.traits, c.created_at,
               ARRAY(SELECT m.segment_id FROM segment_members m WHERE m.contact_id = c.id AND m.exited_at IS NULL)
                 AS segments,
               NOT EXISTS (SELECT 1 FROM promotion_orders o WHERE o.contact_id = c.id AND o.status = 'confirmed')
                 AS first_order
        FROM contacts c WHERE c.id = :c
    """), {"c": contact_id})).one_or_none()
    if row is None:
        raise NotFound(f"contact_id: contact {contact_id} does not exist")
    return Contact(id=contact_id, traits=row.traits, segments=frozenset(row.segments),
                   is_new=now - row.created_at < timedelta(days=30), first_order=bool(row.first_order))


async def _usage(session: AsyncSession, rules: RuleSet, contact_id: int | None) -> dict[int, Usage]:
    """Per-contact use, stock left and budget spent of the promotions that count them (one query)."""
    counted = [p.id for p in rules.promotions]
    if not counted:
        return {}
    rows = await session.execute(text("""
        SELECT split_part(s.subject, ':', 1) AS what, CAST(split_part(s.subject, ':', 2) AS bigint) AS id,
               s.total - s.reserved - s.used AS left, s.reserved + s.used AS spent, 0 AS used
        FROM promotion_stock s
        WHERE s.subject = ANY(ARRAY(SELECT 'promotion:' || i FROM unnest(CAST(:ids AS bigint[])) i)
                              || ARRAY(SELECT 'budget:' || i FROM unnest(CAST(:ids AS bigint[])) i))
        UNION ALL
        SELECT 'user', u.promotion_id, 0, 0, count(*) FROM promotion_usage u
        WHERE u.contact_id = :c AND u.promotion_id = ANY(:ids) GROUP BY u.promotion_id
    """), {"ids": counted, "c": contact_id if contact_id is not None else -1})
    facts: dict[int, dict[str, int | None]] = {}
    for r in rows:
        f = facts.setdefault(r.id, {"used_by_contact": 0, "budget_spent": 0, "stock_left": None})
        if r.what == "promotion":
            f["stock_left"] = int(r.left)
        elif r.what == "budget":
            f["budget_spent"] = int(r.spent)
        else:
            f["used_by_contact"] = int(r.used)
    return {pid: Usage(**f) for pid, f in facts.items()}  # type: ignore[arg-type]


async def _points(session: AsyncSession, rules: RuleSet, contact_id: int | None, requested: int) -> Points:
    programs = {p.program_id for p in rules.promotions if p.program_id is not None}
    if requested <= 0 or contact_id is None or not programs:
        return Points(requested, 0)
    balance = await session.scalar(text("""
        SELECT max(a.balance - coalesce((SELECT sum(h.amount) FROM ledger_holds h WHERE h.contact_id = a.contact_id
                   AND h.program_id = a.program_id AND h.status = 'pending'), 0))
        FROM ledger_accounts a WHERE a.contact_id = :c AND a.program_id = ANY(:p)
    """), {"c": contact_id, "p": sorted(programs)})
    return Points(requested, max(0, int(balance or 0)))


async def price(session: AsyncSession, rules: RuleSet, request: QuoteRequest, *, now: datetime,
                order_id: str | None = None) -> Quote:
    """Price a cart against the cached rule set: no side effects."""
    contact = await _contact(session, request.contact_id, now)
    offered = await coupons.resolve(session, request.coupons, rules.public_codes) if request.coupons else []
    usage = await _usage(session, rules, request.contact_id)
    points = await _points(session, rules, request.contact_id, request.points)
    cart = Cart(request.lines, shipping=request.shipping, channel=request.channel, now=now, order_id=order_id)
    return quote(cart, rules.promotions, contact=contact, coupons=offered, points=points, usage=usage)


def body_hash(order_id: str, request: QuoteRequest) -> str:
    return hashlib.sha256(orjson.dumps([order_id, asdict(request)], option=orjson.OPT_SORT_KEYS)).hexdigest()


def points_reference(order_id: str) -> str:
    return f"order:{order_id}:points"


async def get_order(session: AsyncSession, order_id: str) -> Order:
    row = (await session.execute(text("""
        SELECT order_id, contact_id, status, quote, subtotal, discount, total, points_used, program_id, expires_at,
               created_at, updated_at
        FROM promotion_orders WHERE order_id = :o
    """), {"o": order_id})).one_or_none()
    if row is None:
        raise NotFound(f"order {order_id!r} does not exist")
    return Order(**row._mapping)


async def _existing(session: AsyncSession, order_id: str, digest: str) -> Order | None:
    found = await session.scalar(text("SELECT body_hash FROM promotion_orders WHERE order_id = :o"), {"o": order_id})
    if found is None:
        return None
    if found != digest:
        raise Conflict(f"order {order_id!r} already exists with a different body")
    return await get_order(session, order_id)


async def place_order(session: AsyncSession, rules: RuleSet, order_id: str, request: QuoteRequest, *,
                      now: datetime, hold_seconds: int) -> tuple[Order, bool]:
    """Lock a quote: price, reserve coupons, stock and budget, hold the points, record the order pending.
    Returns (order, created)."""
    digest = body_hash(order_id, request)
    existing = await _existing(session, order_id, digest)
    if existing is not None:
        return existing, False
    result = await price(session, rules, request, now=now, order_id=order_id)
    expires_at = now + timedelta(seconds=hold_seconds)
    keep_until = expires_at + timedelta(seconds=GRACE_SECONDS)
    public = set(rules.public_codes)
    await coupons.reserve_for_order(session, order_id, [c for c in result.coupon_codes if c not in public])
    program_id = None
    by_id = {p.id: p for p in rules.promotions}
    wanted = {}
    for applied in result.applied:
        wanted[inventory.promotion_subject(applied.promotion_id)] = 1
        if applied.discount > 0:
            wanted[inventory.budget_subject(applied.promotion_id)] = applied.discount
    counted = await inventory.levels(session, list(wanted))
    for subject in sorted(counted):  # one lock order for every order: no deadlock between two
        await inventory.reserve(session, order_id, subject, wanted[subject], expires_at=keep_until)
    for applied in result.applied:
        if applied.points_used and request.contact_id is not None:
            program_id = by_id[applied.promotion_id].program_id
            assert program_id is not None
            await post(session, program_id, Request(points_reference(order_id), Kind.HOLD, request.contact_id,
                                                    applied.points_used,
                                                    hold_seconds=hold_seconds + GRACE_SECONDS), now=now)
    created = await session.scalar(text("""
        INSERT INTO promotion_orders (order_id, contact_id, body_hash, request, quote, subtotal, discount, total,
                                      points_used, program_id, expires_at)
        VALUES (:o, :c, :h, CAST(:r AS jsonb), CAST(:q AS jsonb), :sub, :d, :t, :pts, :prog, :e)
        ON CONFLICT (order_id) DO NOTHING RETURNING 1
    """), {"o": order_id, "c": request.contact_id, "h": digest, "r": orjson.dumps(asdict(request)).decode(),
           "q": orjson.dumps(asdict(result)).decode(), "sub": result.subtotal, "d": result.discount,
           "t": result.total, "pts": result.points_used, "prog": program_id, "e": expires_at})
    if not created:  # a concurrent request with the same id got there first
        again = await _existing(session, order_id, digest)
        assert again is not None
        return again, False
    return await get_order(session, order_id), True


async def _transition(session: AsyncSession, order_id: str, to: str, now: datetime) -> Order | None:
    row = await session.scalar(text("""
        UPDATE promotion_orders SET status = CAST(:to AS text), updated_at = now()
        WHERE order_id = :o AND status = 'pending' AND (CAST(:to AS text) <> 'confirmed' OR expires_at > :now)
        RETURNING 1
    """), {"o": order_id, "to": to, "now": now})
    return await get_order(session, order_id) if row else None


async def confirm(session: AsyncSession, order_id: str, *, now: datetime) -> Order:
    """Settle a pending order: coupons redeemed, stock and budget used, points taken; confirming again is a no-op."""
    order = await _transition(session, order_id, "confirmed", now)
    if order is None:
        current = await get_order(session, order_id)
        if current.status == "confirmed":
            return current
        raise Conflict(f"order {order_id!r} is {current.status}" +
                       (" (its hold timed out)" if current.status == "pending" else ""))
    await coupons.settle_for_order(session, order_id, redeem=True)
    await inventory.commit(session, order_id)
    if order.points_used and order.program_id is not None and order.contact_id is not None:
        await post(session, order.program_id, Request(f"order:{order_id}:points:commit", Kind.COMMIT,
                                                      order.contact_id, hold_reference=points_reference(order_id)),
                   now=now)
    applied = [a for a in order.quote["applied"] if a["discount"] > 0 or a.get("gift")]
    if applied:
        await session.execute(text("""
            INSERT INTO promotion_usage (contact_id, promotion_id, order_id, discount)
            SELECT :c, p, :o, d FROM unnest(CAST(:p AS bigint[]), CAST(:d AS bigint[])) AS u(p, d)
            ON CONFLICT DO NOTHING
        """), {"c": order.contact_id or 0, "o": order_id, "p": [a["promotion_id"] for a in applied],
               "d": [a["discount"] for a in applied]})
    return order


async def release(session: AsyncSession, order_id: str, *, now: datetime, why: str = "cancelled") -> Order:
    """Cancel (or expire, `why`) a pending order: coupons, stock and budget back, points hold voided. Idempotent;
    a confirmed order cannot be cancelled (409) and is left alone by an expiry."""
    order = await _transition(session, order_id, why, now)
    if order is None:
        current = await get_order(session, order_id)
        if current.status == "confirmed" and why == "cancelled":
            raise Conflict(f"order {order_id!r} is confirmed and cannot be cancelled")
        return current
    await coupons.settle_for_order(session, order_id, redeem=False)
    await inventory.release(session, order_id)
    if order.points_used and order.program_id is not None and order.contact_id is not None:
        try:
            await post(session, order.program_id, Request(f"order:{order_id}:points:void", Kind.VOID,
                                                          order.contact_id,
                                                          hold_reference=points_reference(order_id)), now=now)
        except HoldNotPending:
            pass  # timed out and voided by the ledger's own sweep already
    return order


async def list_orders(session: AsyncSession, *, contact_id: int | None, status: str | None,
                      limit: int) -> Sequence[Order]:
    rows = await session.execute(text("""
        SELECT order_id, contact_id, status, quote, subtotal, discount, total, points_used, program_id, expires_at,
               created_at, updated_at
        FROM promotion_orders
        WHERE (CAST(:c AS bigint) IS NULL OR contact_id = :c) AND (CAST(:s AS text) IS NULL OR status = :s)
        ORDER BY created_at DESC, order_id DESC LIMIT :limit
    """), {"c": contact_id, "s": status, "limit": limit})
    return [Order(**r._mapping) for r in rows]
