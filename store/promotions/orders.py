"""Quotes and orders: the facts a quote needs (one statement, none for the rule set), and orders that lock a
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
import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import Conflict, DomainError, NotFound
from domain.ledger.postings import HoldNotPending, Kind, Request
from domain.promotions.model import Cart, Contact, Line, OfferedCoupon, Points, Usage
from domain.promotions.pricing import Quote, quote
from store.db import plain_url
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


# Everything a quote needs to know beyond the cached rule set, in one statement (one round trip, one snapshot):
# the contact's facts, the offered coupons, stock left and budget spent of the rule set's promotions, the
# contact's use of them, and the points balance when points are asked for.
FACTS = """
    SELECT
      (SELECT json_build_object(
                'traits', c.traits, 'created_at', c.created_at,
                'segments', ARRAY(SELECT m.segment_id FROM segment_members m
                                  WHERE m.contact_id = c.id AND m.exited_at IS NULL),
                'first_order', NOT EXISTS (SELECT 1 FROM promotion_orders o
                                           WHERE o.contact_id = c.id AND o.status = 'confirmed'))
       FROM contacts c WHERE c.id = %(c)s) AS contact,
      (SELECT json_agg(json_build_object('code', k.code, 'template_id', k.template_id, 'state', k.state,
                                         'contact_id', k.contact_id, 'valid_from', k.valid_from,
                                         'valid_until', k.valid_until, 'order_id', k.order_id))
       FROM coupons k WHERE k.code = ANY(CAST(%(codes)s AS text[]))) AS coupons,
      (SELECT json_agg(json_build_array(s.subject, s.total - s.reserved - s.used, s.reserved + s.used))
       FROM promotion_stock s WHERE s.subject = ANY(CAST(%(subjects)s AS text[]))) AS stock,
      (SELECT json_agg(json_build_array(u.promotion_id, u.n))
       FROM (SELECT promotion_id, count(*) AS n FROM promotion_usage
             WHERE contact_id = %(c)s AND promotion_id = ANY(CAST(%(ids)s AS bigint[]))
             GROUP BY promotion_id) u) AS usage,
      (SELECT max(a.balance - coalesce((SELECT sum(h.amount) FROM ledger_holds h WHERE h.contact_id = a.contact_id
                                        AND h.program_id = a.program_id AND h.status = 'pending'), 0))
       FROM ledger_accounts a
       WHERE a.contact_id = %(c)s AND a.program_id = ANY(CAST(%(programs)s AS bigint[]))) AS balance
"""  # in the driver's parameter style: run by psycopg itself on the quotes' pool, or through a session


@dataclass(frozen=True)
class _Coupon:
    template_id: int
    state: str
    contact_id: int | None
    valid_from: datetime | None
    valid_until: datetime | None
    order_id: str | None


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _facts_params(rules: RuleSet, request: QuoteRequest, codes: Sequence[str]) -> dict[str, Any]:
    programs = rules.programs if request.points > 0 and request.contact_id is not None else ()
    return {"c": request.contact_id, "codes": coupons.lookup_codes(codes, rules.public_codes),
            "subjects": rules.subjects_array, "ids": rules.ids_array, "programs": list(programs)}


def _read_facts(row: Sequence[Any], rules: RuleSet, request: QuoteRequest, now: datetime,
                codes: Sequence[str]) -> tuple[Contact, list[OfferedCoupon], dict[int, Usage], Points]:
    """The contact, the offered coupons, per-promotion usage and the points balance, from FACTS' one row."""
    found_contact, found_coupons, found_stock, found_usage, balance = row
    contact = Contact()
    if request.contact_id is not None:
        found = _json(found_contact)
        if found is None:
            raise NotFound(f"contact_id: contact {request.contact_id} does not exist")
        created_at = _when(found["created_at"])
        contact = Contact(id=request.contact_id, traits=found["traits"] or {}, segments=frozenset(found["segments"]),
                          is_new=created_at is not None and now - created_at < timedelta(days=30),
                          first_order=bool(found["first_order"]))
    rows = {r["code"]: _Coupon(r["template_id"], r["state"], r["contact_id"], _when(r["valid_from"]),
                               _when(r["valid_until"]), r["order_id"]) for r in _json(found_coupons) or []}
    offered = coupons.offered(codes, rules.public_codes, rows)
    facts: dict[int, dict[str, int | None]] = {}
    for subject, left, spent in _json(found_stock) or []:
        what, _, pid = subject.partition(":")
        f = facts.setdefault(int(pid), {"used_by_contact": 0, "budget_spent": 0, "stock_left": None})
        if what == "promotion":
            f["stock_left"] = int(left)
        else:
            f["budget_spent"] = int(spent)
    for pid, used in _json(found_usage) or []:
        facts.setdefault(int(pid), {"used_by_contact": 0, "budget_spent": 0, "stock_left": None})[
            "used_by_contact"] = int(used)
    usage = {pid: Usage(**f) for pid, f in facts.items()}  # type: ignore[arg-type]
    asked = request.points > 0 and request.contact_id is not None and bool(rules.programs)
    points = Points(request.points, max(0, int(balance or 0)) if asked else 0)
    return contact, offered, usage, points


def _priced(rules: RuleSet, request: QuoteRequest, now: datetime, codes: Sequence[str], row: Sequence[Any],
            order_id: str | None = None) -> Quote:
    contact, offered, usage, points = _read_facts(row, rules, request, now, codes)
    cart = Cart(request.lines, shipping=request.shipping, channel=request.channel, now=now, order_id=order_id)
    return quote(cart, rules.index, contact=contact, coupons=offered, points=points, usage=usage)


async def price(session: AsyncSession, rules: RuleSet, request: QuoteRequest, *, now: datetime,
                order_id: str | None = None) -> Quote:
    """Price a cart against the cached rule set: no side effects, one query."""
    codes = list(dict.fromkeys(request.coupons))
    connection = await session.connection()
    row = (await connection.exec_driver_sql(FACTS, _facts_params(rules, request, codes))).one()
    return _priced(rules, request, now, codes, row, order_id)


async def quote_now(sessions: async_sessionmaker[AsyncSession], rules: RuleSet, request: QuoteRequest, *,
                    now: datetime) -> Quote:
    """A quote outside any transaction: its one statement is its own snapshot, so there is no BEGIN or COMMIT to
    wait for — a quote costs one round trip to the database."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        return await price(session, rules, request, now=now)


def quote_pool(database_url: str, *, max_size: int = 10) -> AsyncConnectionPool:
    """Connections for quotes alone, apart from the request sessions' pool (open it with `open(wait=False)`):
    a quote is one statement, so its connection is in autocommit (no BEGIN, no COMMIT), checked out without the
    sessions' pre-ping round trip (a connection the server dropped fails that quote with a 503 and is discarded),
    and used by psycopg directly (JSON read by `store.db.json_loads`, as on every connection), the statement's
    generic plan kept; SQLAlchemy's session and greenlet bridge cost a quote more CPU than the statement itself."""

    async def configure(connection: psycopg.AsyncConnection[Any]) -> None:
        # FACTS is prepared after a few runs (psycopg), but its subqueries over partitioned tables make Postgres'
        # generic plan look dearer than a custom one, so it re-planned every quote (0.4 of its 0.75 ms on the
        # server); the generic plan prunes partitions at run time just as well.
        await connection.execute("SET plan_cache_mode = force_generic_plan")

    return AsyncConnectionPool(plain_url(database_url), min_size=1, max_size=max_size, open=False, timeout=5,
                               kwargs={"autocommit": True, "application_name": "nudge quotes"}, configure=configure)


async def quote_pooled(pool: AsyncConnectionPool, rules: RuleSet, request: QuoteRequest, *, now: datetime) -> Quote:
    """`quote_now` on the quotes' own pool (`quote_pool`): the same one statement, the same quote."""
    codes = list(dict.fromkeys(request.coupons))
    async with pool.connection() as connection:
        cursor = await connection.execute(FACTS, _facts_params(rules, request, codes))
        row = await cursor.fetchone()
    assert row is not None  # FACTS selects one row, always
    return _priced(rules, request, now, codes, row)


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


async def list_orders(session: AsyncSession, *, contact_id: int | None, status: str | None, before: str | None,
                      limit: int) -> list[Order]:
    """Orders newest first, a page older than the order `before`, optionally one contact's or one status'."""
    if before is not None and await session.scalar(
            text("SELECT 1 FROM promotion_orders WHERE order_id = :b"), {"b": before}) is None:
        raise DomainError(f"before: order {before!r} does not exist; pass the `next_before` of a page")
    rows = await session.execute(text("""
        SELECT order_id, contact_id, status, quote, subtotal, discount, total, points_used, program_id, expires_at,
               created_at, updated_at
        FROM promotion_orders o
        WHERE (CAST(:c AS bigint) IS NULL OR o.contact_id = :c) AND (CAST(:s AS text) IS NULL OR o.status = :s)
          AND (CAST(:b AS text) IS NULL OR (o.created_at, o.order_id)
               < (SELECT created_at, order_id FROM promotion_orders WHERE order_id = :b))
        ORDER BY o.created_at DESC, o.order_id DESC LIMIT :limit
    """), {"c": contact_id, "s": status, "b": before, "limit": limit})
    return [Order(**r._mapping) for r in rows]


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
           "q": orjson.dumps(result).decode(), "sub": result.subtotal, "d": result.discount,
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
