"""Promotions and coupon templates: create, change, read. Every change bumps the rule-set version, and this
process's cache polls it on the next quote."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, Session
from api.params import Cursor, Id
from api.schemas.promotions import (
    PromotionIn,
    PromotionOut,
    PromotionPage,
    PromotionPatch,
    TemplateIn,
    TemplateOut,
    TemplatePage,
)
from store.promotions import promotions
from store.promotions.cache import RULES

router = APIRouter(tags=["promotions"])


@router.post("/v1/promotions", response_model=PromotionOut, status_code=201, dependencies=[Admin],
             summary="Create a promotion (any kind of the unified discount model)")
async def create_promotion(body: PromotionIn, session: Session) -> PromotionOut:
    row = await promotions.create_promotion(session, body.stored(), status=body.status, stock=body.stock)
    RULES.invalidate()
    return PromotionOut(**asdict(row))


@router.get("/v1/promotions", response_model=PromotionPage, dependencies=[Reader],
            summary="Promotions in id order, a page at a time")
async def list_promotions(
    session: Session, status: Literal["active", "paused", "archived"] | None = None,
    after: Annotated[Cursor | None, Query(description="Return promotions after this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> PromotionPage:
    found = await promotions.list_promotions(session, status=status, after=after, limit=limit)
    return PromotionPage(items=[PromotionOut(**asdict(p)) for p in found],
                         next_after=found[-1].id if len(found) == limit else None)


@router.get("/v1/promotions/{promotion_id}", response_model=PromotionOut, dependencies=[Reader],
            summary="A promotion with its stock left")
async def get_promotion(promotion_id: Id, session: Session) -> PromotionOut:
    return PromotionOut(**asdict(await promotions.get_promotion(session, promotion_id)))


@router.patch("/v1/promotions/{promotion_id}", response_model=PromotionOut, dependencies=[Admin],
              summary="Change a promotion's definition, status or stock")
async def update_promotion(promotion_id: Id, body: PromotionPatch, session: Session) -> PromotionOut:
    row = await promotions.update_promotion(
        session, promotion_id, definition=body.definition.stored() if body.definition else None,
        status=body.status, stock=body.stock)
    RULES.invalidate()
    return PromotionOut(**asdict(row))


@router.post("/v1/coupon-templates", response_model=TemplateOut, status_code=201, dependencies=[Admin],
             summary="Create a coupon template (validity, shared public code, per-contact limit, stock)")
async def create_template(body: TemplateIn, session: Session) -> TemplateOut:
    template = await promotions.create_template(session, **body.model_dump())
    RULES.invalidate()
    return TemplateOut(**asdict(template))


@router.get("/v1/coupon-templates", response_model=TemplatePage, dependencies=[Reader],
            summary="Coupon templates in id order, a page at a time")
async def list_templates(
    session: Session, after: Annotated[Cursor | None, Query(description="Return templates after this id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> TemplatePage:
    found = await promotions.list_templates(session, after=after, limit=limit)
    return TemplatePage(items=[TemplateOut(**asdict(t)) for t in found],
                        next_after=found[-1].id if len(found) == limit else None)


@router.get("/v1/coupon-templates/{template_id}", response_model=TemplateOut, dependencies=[Reader],
            summary="A coupon template with its stock left")
async def get_template(template_id: Id, session: Session) -> TemplateOut:
    return TemplateOut(**asdict(await promotions.get_template(session, template_id)))
