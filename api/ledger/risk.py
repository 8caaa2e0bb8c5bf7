"""Risk controls: velocity limits per contact, device or IP; the blocklist; credits held for review."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from api.deps import Admin, Reader, Session
from api.ledger.postings import review_out
from api.params import Id
from api.schemas.ledger import BlockIn, ResolveIn, ReviewOut, RiskRuleIn, RiskRuleOut
from domain.errors import DomainError
from store.ledger import risk

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])


@router.post("/risk/rules", response_model=RiskRuleOut, status_code=201, dependencies=[Admin],
             summary="Add a velocity limit on credits or redemptions per contact, device or IP")
async def create_risk_rule(body: RiskRuleIn, session: Session) -> RiskRuleOut:
    if body.max_count is None and body.max_amount is None:
        raise DomainError("a rule needs max_count, max_amount or both")
    if body.action == "redeem" and body.verdict == "review":
        raise DomainError("redemptions are refused, not held: use verdict `refuse`")
    rule = await risk.create_rule(session, **body.model_dump())
    return RiskRuleOut(**asdict(rule))


@router.get("/risk/rules", response_model=list[RiskRuleOut], dependencies=[Reader], summary="A program's rules")
async def list_risk_rules(session: Session, program_id: Id) -> list[RiskRuleOut]:
    return [RiskRuleOut(**asdict(r)) for r in await risk.rules(session, program_id)]


@router.post("/risk/blocklist", status_code=204, dependencies=[Admin],
             summary="Block a contact, device or IP from earning and redeeming")
async def block(body: BlockIn, session: Session) -> Response:
    await risk.block(session, body.dimension, body.value, body.reason)
    return Response(status_code=204)


@router.delete("/risk/blocklist/{dimension}/{value}", status_code=204, dependencies=[Admin],
               summary="Lift a block")
async def unblock(dimension: Literal["contact", "device", "ip"], value: str, session: Session) -> Response:
    await risk.unblock(session, dimension, value)
    return Response(status_code=204)


@router.get("/reviews", response_model=list[ReviewOut], dependencies=[Reader],
            summary="Credits held by risk controls (`status=pending` is the queue)")
async def list_reviews(session: Session, status: Literal["pending", "released", "rejected"] | None = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[ReviewOut]:
    return [review_out(r) for r in await risk.list_reviews(session, status, limit)]


@router.post("/reviews/{review_id}/{decision}", response_model=ReviewOut, dependencies=[Admin],
             summary="Release a held credit (it is posted, once) or reject it")
async def decide_review(review_id: Id, decision: Literal["release", "reject"], body: ResolveIn,
                        session: Session) -> ReviewOut:
    review, receipt = await risk.decide(session, review_id, release=decision == "release", note=body.note,
                                        now=datetime.now(UTC))
    return review_out(review, receipt)
