"""The promotions page: per promotion, the orders that used it and what it cost, and its stock left; per coupon
template, coupons issued and redeemed (the issue → redeem rate) and stock left. One REPEATABLE READ snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

LIMIT = 200


@dataclass(frozen=True)
class PromotionUsage:
    id: int
    name: str
    kind: str
    status: str
    orders: int
    discount: int
    stock: int | None
    stock_left: int | None


@dataclass(frozen=True)
class TemplateUsage:
    id: int
    name: str
    issued: int
    reserved: int
    redeemed: int
    expired: int
    revoked: int
    stock_left: int | None

    @property
    def redeem_rate(self) -> float:
        return self.redeemed / self.issued if self.issued else 0.0


@dataclass(frozen=True)
class PromotionsBoard:
    promotions: list[PromotionUsage]
    templates: list[TemplateUsage]
    orders: dict[str, int]

    @property
    def discount(self) -> int:
        return sum(p.discount for p in self.promotions)


async def promotions_dashboard(session: AsyncSession) -> PromotionsBoard:
    await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    promotions = await session.execute(text("""
        SELECT p.id, p.name, p.kind, p.status, coalesce(u.orders, 0) AS orders, coalesce(u.discount, 0) AS discount,
               s.total AS stock, s.total - s.reserved - s.used AS stock_left
        FROM promotions p
        LEFT JOIN (SELECT promotion_id, count(*) AS orders, sum(discount) AS discount FROM promotion_usage
                   GROUP BY promotion_id) u ON u.promotion_id = p.id
        LEFT JOIN promotion_stock s ON s.subject = 'promotion:' || p.id
        ORDER BY coalesce(u.discount, 0) DESC, p.id LIMIT :limit
    """), {"limit": LIMIT})
    templates = await session.execute(text("""
        SELECT t.id, t.name, count(c.id) AS issued, count(c.id) FILTER (WHERE c.state = 'reserved') AS reserved,
               count(c.id) FILTER (WHERE c.state = 'redeemed') AS redeemed,
               count(c.id) FILTER (WHERE c.state = 'expired') AS expired,
               count(c.id) FILTER (WHERE c.state = 'revoked') AS revoked,
               min(s.total - s.reserved - s.used) AS stock_left
        FROM coupon_templates t LEFT JOIN coupons c ON c.template_id = t.id
        LEFT JOIN promotion_stock s ON s.subject = 'template:' || t.id
        GROUP BY t.id ORDER BY t.id DESC LIMIT :limit
    """), {"limit": LIMIT})
    orders = await session.execute(text("SELECT status, count(*) AS n FROM promotion_orders GROUP BY status"))
    return PromotionsBoard([PromotionUsage(**r._mapping) for r in promotions],
                           [TemplateUsage(**r._mapping) for r in templates],
                           {r.status: int(r.n) for r in orders})
