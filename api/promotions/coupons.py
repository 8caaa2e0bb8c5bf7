"""Coupons: bulk code generation (streamed), issuance to a contact (idempotent by reference), lookup, a contact's
coupons with where each came from, revocation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from api.deps import Admin, Reader, Session
from api.params import Cursor, Id
from api.schemas.promotions import CodesIn, CouponOut, CouponPage, IssueIn
from domain.promotions.coupons import display, source
from store.promotions import coupons

router = APIRouter(tags=["promotions"])
Code = Annotated[str, Path(min_length=1, max_length=60, description="A coupon code, with or without dashes.")]


@router.post("/v1/coupon-templates/{template_id}/codes", dependencies=[Admin], status_code=201,
             response_class=StreamingResponse,
             responses={201: {"content": {"text/plain": {}}, "description": "One code per line"}},
             summary="Generate unassigned codes (COPY); streamed one per line; the same batch returns the same codes")
async def generate_codes(template_id: Id, body: CodesIn, session: Session) -> StreamingResponse:
    codes = await coupons.generate_codes(session, template_id, body.count, batch=body.batch)

    async def lines() -> AsyncIterator[bytes]:
        for start in range(0, len(codes), 5000):
            yield "".join(display(c) + "\n" for c in codes[start:start + 5000]).encode()

    return StreamingResponse(lines(), status_code=201, media_type="text/plain")


@router.post("/v1/coupons", response_model=CouponOut, status_code=201, dependencies=[Admin],
             summary="Issue a coupon to a contact; the same reference returns the coupon issued the first time")
async def issue(body: IssueIn, session: Session) -> CouponOut:
    coupon = await coupons.issue_coupon(session, body.template_id, body.contact_id, body.reference,
                                        now=datetime.now(UTC))
    return _out(coupon)


def _out(coupon: coupons.Coupon) -> CouponOut:
    return CouponOut(**asdict(coupon), source=source(coupon.reference))


@router.get("/v1/coupons", response_model=CouponPage, dependencies=[Reader],
            summary="Coupons in id order, a page at a time: a contact's (with where each came from), a template's")
async def list_coupons(
    session: Session, contact_id: Id | None = None, template_id: Id | None = None,
    state: Literal["issued", "reserved", "redeemed", "expired", "revoked"] | None = None,
    after: Annotated[Cursor | None, Query(description="Return coupons after this coupon id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CouponPage:
    found = await coupons.list_coupons(session, template_id=template_id, contact_id=contact_id, state=state,
                                       after=after, limit=limit)
    return CouponPage(items=[_out(c) for c in found], next_after=found[-1].id if len(found) == limit else None)


@router.get("/v1/coupons/{code}", response_model=CouponOut, dependencies=[Reader], summary="A coupon by its code")
async def get_coupon(code: Code, session: Session) -> CouponOut:
    return _out(await coupons.get_coupon(session, code))


@router.post("/v1/coupons/{code}/revoke", response_model=CouponOut, dependencies=[Admin],
             summary="Revoke an issued or reserved coupon")
async def revoke(code: Code, session: Session) -> CouponOut:
    return _out(await coupons.revoke(session, code))
