"""Promotions' HTTP API, one router per part: definitions (promotions, coupon templates), coupons, and pricing
(quotes and orders); `router` joins them for the app."""

from __future__ import annotations

from fastapi import APIRouter

from api.promotions import coupons, definitions, pricing

router = APIRouter()
for part in (definitions, coupons, pricing):
    router.include_router(part.router)
