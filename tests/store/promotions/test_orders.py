"""Coupons and orders in the store: issuance idempotent by reference, bulk codes, an order that locks a quote
(coupon reserved, stock taken), replayed with the same id, refused with a different body, released on cancel and
expiry, redeemed on confirm; and the cascades (erasure cancels pending orders, a merge moves coupons)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import Conflict, NotFound
from domain.ledger.postings import Kind, Request
from domain.promotions.coupons import well_formed
from domain.promotions.model import Line
from domain.promotions.pricing import Quote
from store.db import transaction
from store.erasure import erase
from store.ledger import accounts, programs
from store.merges import merge_contacts
from store.promotions import coupons, inventory, orders, promotions
from store.promotions.cache import RuleSet, RuleSetCache

NOW = datetime.now(UTC)
LINES = (Line("tee", "apparel", 5_000, 2),)


async def _contact(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(sessions) as s:
        return int(await s.scalar(text("INSERT INTO contacts (user_id) VALUES (:u) RETURNING id"),
                                  {"u": f"promo-{uuid.uuid4().hex}"}) or 0)


async def _coupon_world(sessions: async_sessionmaker[AsyncSession], stock: int = 10) -> tuple[int, int]:
    async with transaction(sessions) as s:
        template = await promotions.create_template(
            s, name="¥20 off", public_code=None, valid_from=None, valid_until=None, valid_days=30,
            per_contact_limit=2, stock=stock)
        promotion = await promotions.create_promotion(
            s, {"name": "¥20 coupon", "kind": "amount_off", "amount": 2_000, "threshold": 5_000,
                "coupon_template_id": template.id}, stock=100)
    return template.id, promotion.id


def _why(result: Quote, code: str) -> list[str]:
    """Why an offered coupon did not apply (other tests' promotions, scoped elsewhere, are listed too)."""
    return [n.reason for n in result.not_applied if n.coupon_code == code]


async def _rules(sessions: async_sessionmaker[AsyncSession]) -> RuleSet:
    return await RuleSetCache().current(sessions)


async def test_issue_is_idempotent_by_reference_and_limited_per_contact(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions)
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        first = await coupons.issue_coupon(s, template, contact, "reward:t1:1", now=NOW)
        again = await coupons.issue_coupon(s, template, contact, "reward:t1:1", now=NOW)
        assert first == again and well_formed(first.code)
        assert first.valid_until is not None and first.valid_until - first.issued_at == timedelta(days=30)
        await coupons.issue_coupon(s, template, contact, "reward:t1:2", now=NOW)
        with pytest.raises(coupons.CouponLimitReached):
            await coupons.issue_coupon(s, template, contact, "reward:t1:3", now=NOW)
    async with sessions() as s:
        assert (await promotions.get_template(s, template)).stock_left == 8


async def test_template_stock_caps_issuance(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions, stock=1)
    async with transaction(sessions) as s:
        await coupons.issue_coupon(s, template, await _contact(sessions), "a", now=NOW)
    async with transaction(sessions) as s:
        with pytest.raises(inventory.OutOfStock):
            await coupons.issue_coupon(s, template, await _contact(sessions), "b", now=NOW)


async def test_bulk_codes_are_unique_and_idempotent_by_batch(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions, stock=2_000)
    async with transaction(sessions) as s:
        codes = await coupons.generate_codes(s, template, 1_500, batch="b1")
    assert len(set(codes)) == 1_500 and all(well_formed(c) for c in codes)
    async with transaction(sessions) as s:
        assert await coupons.generate_codes(s, template, 1_500, batch="b1") == codes
        assert (await promotions.get_template(s, template)).stock_left == 500


async def test_an_order_locks_its_quote_and_releases_on_cancel(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, promotion = await _coupon_world(sessions)
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        coupon = await coupons.issue_coupon(s, template, contact, "lock", now=NOW)
    rules = await _rules(sessions)
    request = orders.QuoteRequest(LINES, contact_id=contact, coupons=(coupon.display_code.lower(),))
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        order, created = await orders.place_order(s, rules, order_id, request, now=NOW, hold_seconds=600)
    assert created and order.total == 8_000 and order.status == "pending"
    async with transaction(sessions) as s:
        replay, created = await orders.place_order(s, rules, order_id, request, now=NOW, hold_seconds=600)
        assert not created and replay == order
        assert (await coupons.get_coupon(s, coupon.code)).state == "reserved"
        assert (await promotions.get_promotion(s, promotion)).stock_left == 99
    async with transaction(sessions) as s:
        with pytest.raises(Conflict, match="different body"):
            await orders.place_order(s, rules, order_id, orders.QuoteRequest(LINES, contact_id=contact), now=NOW,
                                     hold_seconds=600)
    # Meanwhile the coupon is held: another order cannot use it, and a quote says why.
    async with sessions() as s:
        other = await orders.price(s, rules, request, now=NOW)
    assert other.total == 10_000 and _why(other, coupon.code) == ["coupon_reserved"]
    async with transaction(sessions) as s:
        assert (await orders.release(s, order_id, now=NOW)).status == "cancelled"
        assert (await orders.release(s, order_id, now=NOW)).status == "cancelled"  # idempotent
    async with sessions() as s:
        assert (await coupons.get_coupon(s, coupon.code)).state == "issued"
        assert (await promotions.get_promotion(s, promotion)).stock_left == 100
    async with transaction(sessions) as s:
        with pytest.raises(Conflict, match="cancelled"):
            await orders.confirm(s, order_id, now=NOW)


async def test_confirm_redeems_and_counts_usage(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, promotion = await _coupon_world(sessions)
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        coupon = await coupons.issue_coupon(s, template, contact, "redeem", now=NOW)
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    request = orders.QuoteRequest(LINES, contact_id=contact, coupons=(coupon.code,))
    async with transaction(sessions) as s:
        await orders.place_order(s, await _rules(sessions), order_id, request, now=NOW, hold_seconds=600)
    async with transaction(sessions) as s:
        assert (await orders.confirm(s, order_id, now=NOW)).status == "confirmed"
        assert (await orders.confirm(s, order_id, now=NOW)).status == "confirmed"
        assert (await orders.release(s, order_id, now=NOW, why="expired")).status == "confirmed"  # too late
        with pytest.raises(Conflict, match="confirmed"):
            await orders.release(s, order_id, now=NOW)
    async with sessions() as s:
        assert (await coupons.get_coupon(s, coupon.code)).state == "redeemed"
        stock = (await inventory.levels(s, [inventory.promotion_subject(promotion)]))
        assert stock[inventory.promotion_subject(promotion)].used == 1
        again = await orders.price(s, await _rules(sessions), request, now=NOW)
    assert _why(again, coupon.code) == ["coupon_used"]


async def test_an_expired_hold_cannot_be_confirmed(sessions: async_sessionmaker[AsyncSession]) -> None:
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        await orders.place_order(s, await _rules(sessions), order_id, orders.QuoteRequest(LINES), now=NOW,
                                 hold_seconds=60)
    async with transaction(sessions) as s:
        with pytest.raises(Conflict, match="timed out"):
            await orders.confirm(s, order_id, now=NOW + timedelta(seconds=61))
    async with transaction(sessions) as s:
        assert (await orders.release(s, order_id, now=NOW, why="expired")).status == "expired"


async def test_erasure_cancels_pending_orders_and_revokes_coupons(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions)
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        held = await coupons.issue_coupon(s, template, contact, "held", now=NOW)
        spare = await coupons.issue_coupon(s, template, contact, "spare", now=NOW)
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        await orders.place_order(s, await _rules(sessions), order_id,
                                 orders.QuoteRequest(LINES, contact_id=contact, coupons=(held.code,)), now=NOW,
                                 hold_seconds=600)
    async with transaction(sessions) as s:
        done = await erase(s, contact, now=NOW)
    assert done is not None and done.removed["promotion_orders_cancelled"] == 1
    async with sessions() as s:
        assert (await orders.get_order(s, order_id)).status == "cancelled"
        assert {(await coupons.get_coupon(s, c.code)).state for c in (held, spare)} == {"revoked"}


async def test_a_merge_moves_coupons_to_the_survivor(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions)
    loser, survivor = await _contact(sessions), await _contact(sessions)
    async with transaction(sessions) as s:
        coupon = await coupons.issue_coupon(s, template, loser, "merge", now=NOW)
    async with transaction(sessions) as s:
        await merge_contacts(s, [(loser, survivor)])
    async with sessions() as s:
        assert (await coupons.get_coupon(s, coupon.code)).contact_id == survivor


async def test_points_as_cash_hold_is_committed_at_confirm_and_voided_at_cancel(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    sku = f"pts-{uuid.uuid4().hex[:8]}"
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        program = await programs.create_program(s, name=f"coins-{sku}", unit="coins", expiry_months=None,
                                                retention_months=6)
        await accounts.post(s, program.id, Request(f"earn:{sku}", Kind.CREDIT, contact, 1_000), now=NOW)
        await promotions.create_promotion(s, {"name": "coins", "kind": "points", "program_id": program.id,
                                              "rate_points": 10, "rate_cents": 10, "max_percent": 50,
                                              "condition": f'"{sku}" in cart.skus'})
    rules = await _rules(sessions)
    request = orders.QuoteRequest((Line(sku, "c", 1_000, 1),), contact_id=contact, points=800)
    for n in range(2):
        order_id = f"o-{sku}-{n}"
        async with transaction(sessions) as s:
            order, _ = await orders.place_order(s, rules, order_id, request, now=NOW, hold_seconds=600)
        assert (order.total, order.points_used) == (500, 500)  # at most half the price
        async with transaction(sessions) as s:
            if n == 0:
                await orders.release(s, order_id, now=NOW)
            else:
                await orders.confirm(s, order_id, now=NOW)
        async with sessions() as s:
            view = await accounts.account(s, await programs.get_program(s, program.id), contact, now=NOW)
        assert (view.balance, view.held) == ((1_000, 0) if n == 0 else (500, 0))


async def test_coupons_past_their_validity_expire(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions)  # valid 30 days from issue
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        old = await coupons.issue_coupon(s, template, contact, "old", now=NOW - timedelta(days=31))
        fresh = await coupons.issue_coupon(s, template, contact, "fresh", now=NOW)
    async with sessions() as s:
        offered = await orders.price(s, await _rules(sessions),
                                     orders.QuoteRequest(LINES, contact_id=contact, coupons=(old.code,)), now=NOW)
    assert _why(offered, old.code) == ["expired"]
    async with transaction(sessions) as s:
        assert await coupons.expire_due(s, NOW) >= 1
    async with sessions() as s:
        assert (await coupons.get_coupon(s, old.code)).state == "expired"
        assert (await coupons.get_coupon(s, fresh.code)).state == "issued"


async def test_a_coupon_revoked_while_held_fails_the_confirm(sessions: async_sessionmaker[AsyncSession]) -> None:
    template, _ = await _coupon_world(sessions)
    contact = await _contact(sessions)
    async with transaction(sessions) as s:
        coupon = await coupons.issue_coupon(s, template, contact, "revoked", now=NOW)
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        await orders.place_order(s, await _rules(sessions), order_id,
                                 orders.QuoteRequest(LINES, contact_id=contact, coupons=(coupon.code,)), now=NOW,
                                 hold_seconds=600)
        await coupons.revoke(s, coupon.code)
    with pytest.raises(Conflict, match="revoked"):
        async with transaction(sessions) as s:
            await orders.confirm(s, order_id, now=NOW)
    async with transaction(sessions) as s:
        assert (await orders.release(s, order_id, now=NOW)).status == "cancelled"
        assert (await coupons.get_coupon(s, coupon.code)).state == "revoked"


async def test_a_shared_public_code_applies_for_anyone(sessions: async_sessionmaker[AsyncSession]) -> None:
    code = f"PUB{uuid.uuid4().hex[:8].upper()}"
    async with transaction(sessions) as s:
        template = await promotions.create_template(s, name="public", public_code=code, valid_from=None,
                                                    valid_until=None, valid_days=None, per_contact_limit=None,
                                                    stock=None)
        await promotions.create_promotion(s, {"name": "public", "kind": "percent_off", "percent": 10,
                                              "coupon_template_id": template.id})
    rules = await RuleSetCache().current(sessions)
    order_id = f"o-{uuid.uuid4().hex[:8]}"
    async with transaction(sessions) as s:
        order, _ = await orders.place_order(s, rules, order_id, orders.QuoteRequest(LINES, coupons=(code.lower(),)),
                                            now=NOW, hold_seconds=600)
    assert order.total == 9_000
    async with transaction(sessions) as s:
        assert (await orders.confirm(s, order_id, now=NOW)).status == "confirmed"


async def test_a_quote_reads_contact_coupons_and_usage_in_one_statement(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    sku = f"one-trip-{uuid.uuid4().hex[:8]}"
    template, coupon_promotion = await _coupon_world(sessions)
    async with transaction(sessions) as s:
        welcome = await promotions.create_promotion(
            s, {"name": "welcome", "kind": "amount_off", "amount": 500, "scope": {"skus": [sku]},
                "condition": 'contact.is_new && contact.first_order && contact.traits.tier == "gold"',
                "per_user_limit": 1}, stock=5)
        contact = int(await s.scalar(text("INSERT INTO contacts (user_id, traits) VALUES (:u, '{\"tier\": \"gold\"}')"
                                          " RETURNING id"), {"u": f"promo-{uuid.uuid4().hex}"}) or 0)
        code = (await coupons.issue_coupon(s, template, contact, "one-trip", now=NOW)).code
    rules = await _rules(sessions)
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    engine = sessions.kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = await orders.quote_now(sessions, rules, orders.QuoteRequest(
            (Line(sku, "apparel", 5_000, 2),), contact_id=contact, coupons=(code, "NOPE-NOPE-NOPE-0")), now=NOW)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert {welcome.id, coupon_promotion} <= {a.promotion_id for a in result.applied}
    assert [n.reason for n in result.not_applied if n.coupon_code == "NOPE-NOPE-NOPE-0"] == ["coupon_invalid"]


async def test_a_quote_on_the_quotes_pool_is_the_same_quote(sessions: async_sessionmaker[AsyncSession],
                                                            database_url: str) -> None:
    """The API prices on its own autocommit pool (psycopg directly, orjson for the JSON): the same statement, the
    same facts, the same quote as through a session."""
    sku = f"pooled-{uuid.uuid4().hex[:8]}"
    template, _ = await _coupon_world(sessions)
    async with transaction(sessions) as s:
        await promotions.create_promotion(
            s, {"name": "pooled", "kind": "percent_off", "percent": 10, "scope": {"skus": [sku]},
                "condition": 'contact.traits.tier == "gold"', "per_user_limit": 1}, stock=5)
        contact = int(await s.scalar(text("INSERT INTO contacts (user_id, traits) VALUES (:u, '{\"tier\": \"gold\"}')"
                                          " RETURNING id"), {"u": f"promo-{uuid.uuid4().hex}"}) or 0)
        code = (await coupons.issue_coupon(s, template, contact, "pooled", now=NOW)).code
    rules = await _rules(sessions)
    request = orders.QuoteRequest((Line(sku, "apparel", 5_000, 2),), contact_id=contact,
                                  coupons=(code, "NOPE-NOPE-NOPE-0"), shipping=300)
    pool = orders.quote_pool(database_url, max_size=2)
    await pool.open()
    try:
        pooled = await orders.quote_pooled(pool, rules, request, now=NOW)
        with pytest.raises(NotFound, match="contact_id"):
            await orders.quote_pooled(pool, rules, orders.QuoteRequest(request.lines, contact_id=2**62), now=NOW)
    finally:
        await pool.close()
    assert pooled == await orders.quote_now(sessions, rules, request, now=NOW)
    assert len(pooled.applied) >= 2 and [n.reason for n in pooled.not_applied if n.coupon_code] == ["coupon_invalid"]
