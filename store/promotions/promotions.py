"""Promotions and coupon templates: create, change, list; every change bumps `promotions_version` in the same
transaction, which is how every API process's rule-set cache learns of it (store/promotions/cache.py).

A promotion's `stock` and `budget` become inventory rows (`promotion:{id}`, `budget:{id}`, store/promotions/
inventory.py), so neither can be overspent under any concurrency; a template's `stock` (`template:{id}`) caps
how many coupons are issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError, NotFound
from domain.promotions.model import Promotion, promotion_from_json
from store.promotions import inventory

STATUSES = ("active", "paused", "archived")


@dataclass(frozen=True)
class PromotionRow:
    id: int
    name: str
    kind: str
    status: str
    definition: dict[str, Any]
    stock: int | None
    stock_left: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Template:
    id: int
    name: str
    public_code: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    per_contact_limit: int | None
    status: str
    stock: int | None
    stock_left: int | None
    created_at: datetime


# A budget is reserved in cents, an order's whole discount at once: split, most reservations would be larger than
# one slot's share and take the path that locks every slot. It stays one row (units of stock are split).
BUDGET_SLOTS = 1


async def bump_version(session: AsyncSession) -> int:
    """The next version, NOTIFYing every listening cache (store/promotions/cache.py) when the transaction commits."""
    return int(await session.scalar(text("""
        WITH bumped AS (UPDATE promotions_version SET version = version + 1 RETURNING version)
        SELECT version, pg_notify('promotions_version', CAST(version AS text)) FROM bumped
    """)) or 0)


async def current_version(session: AsyncSession) -> int:
    return int(await session.scalar(text("SELECT version FROM promotions_version")) or 0)


def _validated(promotion_id: int, definition: dict[str, Any]) -> Promotion:
    return promotion_from_json(promotion_id, definition)


async def _check_template(session: AsyncSession, template_id: int | None) -> None:
    if template_id is not None and not await session.scalar(
            text("SELECT 1 FROM coupon_templates WHERE id = :t"), {"t": template_id}):
        raise DomainError(f"coupon_template_id: coupon template {template_id} does not exist")


async def create_promotion(session: AsyncSession, definition: dict[str, Any], *, status: str = "active",
                           stock: int | None = None) -> PromotionRow:
    """Validate (errors name the field) and store a promotion; its stock and budget become inventory."""
    promotion = _validated(1, definition)
    await _check_template(session, promotion.coupon_template_id)
    row = (await session.execute(text("""
        INSERT INTO promotions (name, kind, status, definition, coupon_template_id, starts_at, ends_at, priority)
        VALUES (:name, :kind, :status, CAST(:d AS jsonb), :t, :s, :e, :p) RETURNING id
    """), {"name": promotion.name, "kind": promotion.kind.value, "status": status,
           "d": orjson.dumps(definition).decode(), "t": promotion.coupon_template_id, "s": promotion.starts_at,
           "e": promotion.ends_at, "p": promotion.priority})).one()
    if stock is not None:
        await inventory.set_total(session, inventory.promotion_subject(row.id), stock)
    if promotion.budget is not None:
        await inventory.set_total(session, inventory.budget_subject(row.id), promotion.budget, slots=BUDGET_SLOTS)
    await bump_version(session)
    return await get_promotion(session, row.id)


async def update_promotion(session: AsyncSession, promotion_id: int, *, definition: dict[str, Any] | None,
                           status: str | None, stock: int | None) -> PromotionRow:
    """Change a promotion's definition, status (active, paused, archived) or stock total."""
    current = await get_promotion(session, promotion_id)
    definition = definition if definition is not None else current.definition
    promotion = _validated(promotion_id, definition)
    await _check_template(session, promotion.coupon_template_id)
    await session.execute(text("""
        UPDATE promotions SET name = :name, kind = :kind, status = :status, definition = CAST(:d AS jsonb),
            coupon_template_id = :t, starts_at = :s, ends_at = :e, priority = :p, updated_at = now()
        WHERE id = :id
    """), {"id": promotion_id, "name": promotion.name, "kind": promotion.kind.value,
           "status": status or current.status, "d": orjson.dumps(definition).decode(),
           "t": promotion.coupon_template_id, "s": promotion.starts_at, "e": promotion.ends_at,
           "p": promotion.priority})
    if stock is not None:
        await inventory.set_total(session, inventory.promotion_subject(promotion_id), stock)
    if promotion.budget is not None:
        await inventory.set_total(session, inventory.budget_subject(promotion_id), promotion.budget,
                                  slots=BUDGET_SLOTS)
    await bump_version(session)
    return await get_promotion(session, promotion_id)


_PROMOTION = """
    SELECT p.id, p.name, p.kind, p.status, p.definition, s.total AS stock, s.total - s.reserved - s.used AS stock_left,
           p.created_at, p.updated_at
    FROM promotions p LEFT JOIN promotion_stock s ON s.subject = 'promotion:' || p.id
"""


async def get_promotion(session: AsyncSession, promotion_id: int) -> PromotionRow:
    row = (await session.execute(text(_PROMOTION + " WHERE p.id = :i"), {"i": promotion_id})).one_or_none()
    if row is None:
        raise NotFound(f"promotion {promotion_id} does not exist")
    return PromotionRow(**row._mapping)


async def list_promotions(session: AsyncSession, *, status: str | None, after: int | None,
                          limit: int) -> list[PromotionRow]:
    rows = await session.execute(text(_PROMOTION + """
        WHERE (CAST(:s AS text) IS NULL OR p.status = :s) AND (CAST(:a AS bigint) IS NULL OR p.id > :a)
        ORDER BY p.id LIMIT :limit
    """), {"s": status, "a": after, "limit": limit})
    return [PromotionRow(**r._mapping) for r in rows]


async def active_rule_set(session: AsyncSession, now: datetime) -> list[Promotion]:
    """Every active promotion not yet over, as domain values (what the cache holds)."""
    rows = await session.execute(text("""
        SELECT id, definition FROM promotions WHERE status = 'active' AND (ends_at IS NULL OR ends_at > :now)
        ORDER BY id
    """), {"now": now})
    return [promotion_from_json(r.id, r.definition) for r in rows]


# ---- coupon templates -------------------------------------------------------------------------------------

_TEMPLATE = """
    SELECT t.id, t.name, t.public_code, t.valid_from, t.valid_until, t.valid_days, t.per_contact_limit, t.status,
           s.total AS stock, s.total - s.reserved - s.used AS stock_left, t.created_at
    FROM coupon_templates t LEFT JOIN promotion_stock s ON s.subject = 'template:' || t.id
"""


async def create_template(session: AsyncSession, *, name: str, public_code: str | None, valid_from: datetime | None,
                          valid_until: datetime | None, valid_days: int | None, per_contact_limit: int | None,
                          stock: int | None) -> Template:
    if valid_from and valid_until and valid_until <= valid_from:
        raise DomainError("valid_until: must be after valid_from")
    if public_code is not None and await session.scalar(
            text("SELECT 1 FROM coupon_templates WHERE public_code = :c"), {"c": public_code}):
        raise DomainError(f"public_code: {public_code!r} is already used by another template")
    template_id = await session.scalar(text("""
        INSERT INTO coupon_templates (name, public_code, valid_from, valid_until, valid_days, per_contact_limit)
        VALUES (:n, :c, :f, :u, :d, :l) RETURNING id
    """), {"n": name, "c": public_code, "f": valid_from, "u": valid_until, "d": valid_days, "l": per_contact_limit})
    assert template_id is not None
    if stock is not None:
        await inventory.set_total(session, inventory.template_subject(template_id), stock)
    await bump_version(session)
    return await get_template(session, template_id)


async def get_template(session: AsyncSession, template_id: int) -> Template:
    row = (await session.execute(text(_TEMPLATE + " WHERE t.id = :i"), {"i": template_id})).one_or_none()
    if row is None:
        raise NotFound(f"coupon template {template_id} does not exist")
    return Template(**row._mapping)


async def list_templates(session: AsyncSession, *, after: int | None, limit: int) -> list[Template]:
    rows = await session.execute(text(_TEMPLATE + """
        WHERE CAST(:a AS bigint) IS NULL OR t.id > :a ORDER BY t.id LIMIT :limit
    """), {"a": after, "limit": limit})
    return [Template(**r._mapping) for r in rows]


async def public_templates(session: AsyncSession) -> dict[str, tuple[int, datetime | None, datetime | None]]:
    """Shared public code → (template, valid from, valid until), for the cache."""
    rows = await session.execute(text("""
        SELECT public_code, id, valid_from, valid_until FROM coupon_templates
        WHERE public_code IS NOT NULL AND status = 'active'
    """))
    return {r.public_code: (r.id, r.valid_from, r.valid_until) for r in rows}
