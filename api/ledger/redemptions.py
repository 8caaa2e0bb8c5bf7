"""Redemptions: the rewards catalogue (items, or coupons of a coupon template bought with points), and spending
points on a reward through one RedemptionWorkflow per order; both listed a page at a time."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from api.deps import Admin, Reader, Session, Temporal
from api.params import Cursor, Id
from api.schemas.ledger import RedemptionIn, RedemptionOut, RedemptionPage, RewardIn, RewardOut, RewardPage
from store.ledger import redemptions
from store.promotions import purchases
from workflows.ledger.redemptions import TASK_QUEUE, RedemptionInput, RedemptionWorkflow, workflow_id
from workflows.schedules import kind

router = APIRouter(tags=["ledger"])


@router.post("/v1/ledger/rewards", response_model=RewardOut, status_code=201, dependencies=[Admin],
             summary="Add a reward to the catalogue: an item, or a coupon of a coupon template")
async def create_reward(body: RewardIn, session: Session) -> RewardOut:
    reward = await purchases.create_reward(session, program_id=body.program_id, name=body.name, cost=body.cost,
                                           stock=body.stock, kind=body.kind, coupon_template_id=body.coupon_template_id)
    return RewardOut(**asdict(reward))


@router.get("/v1/ledger/rewards", response_model=RewardPage, dependencies=[Reader],
            summary="The rewards catalogue in id order, a page at a time")
async def list_rewards(
    session: Session, program_id: Id | None = None,
    in_stock: Annotated[bool | None, Query(description="true: only rewards with stock left; false: only "
                                                        "those out of stock.")] = None,
    after: Annotated[Cursor | None, Query(description="Return rewards after this reward id.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RewardPage:
    found = await redemptions.list_rewards(session, program_id=program_id, in_stock=in_stock, after=after,
                                           limit=limit)
    return RewardPage(items=[RewardOut(**asdict(r)) for r in found],
                      next_after=found[-1].id if len(found) == limit else None)


@router.get("/v1/ledger/rewards/{reward_id}", response_model=RewardOut, dependencies=[Reader],
            summary="A reward with its remaining stock")
async def get_reward(reward_id: Id, session: Session) -> RewardOut:
    return RewardOut(**asdict(await redemptions.get_reward(session, reward_id)))


def _out(order: redemptions.Redemption) -> RedemptionOut:
    return RedemptionOut(**asdict(order) | {"coupon_codes": order.coupon_codes or []},
                         workflow_id=workflow_id(order.order_id))


@router.post("/v1/redemptions", response_model=RedemptionOut, status_code=202, dependencies=[Admin],
             summary="Redeem points for a reward: 202 and a pending order; the same order id again returns it",
             responses={200: {"model": RedemptionOut, "description": "This order already exists: its current state"}})
async def create_redemption(body: RedemptionIn, session: Session, client: Temporal,
                            response: Response) -> RedemptionOut:
    order, created = await redemptions.place_order(
        session, order_id=body.order_id, reward_id=body.reward_id, contact_id=body.contact_id, quantity=body.quantity,
        device=body.device, ip=body.ip, now=datetime.now(UTC))
    if not created:
        response.status_code = 200
        return _out(order)
    try:
        # Started inside the request's transaction: if Temporal refuses, the order row is rolled back.
        await client.start_workflow(
            RedemptionWorkflow.run,
            RedemptionInput(order_id=order.order_id, program_id=order.program_id, contact_id=order.contact_id,
                            reward_id=order.reward_id, quantity=order.quantity, points=order.points,
                            coupon_template_id=order.coupon_template_id),
            id=workflow_id(body.order_id), task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=kind("redemption"),
            static_summary=f"Redeem {order.quantity} × reward #{order.reward_id} for {order.points} points",
        )
    except WorkflowAlreadyStartedError:
        pass  # a concurrent retry of the same order started it
    except RPCError as exc:
        raise HTTPException(503, f"Temporal refused to start the redemption: {exc.message}") from exc
    return _out(order)


@router.get("/v1/redemptions", response_model=RedemptionPage, dependencies=[Reader],
            summary="Redemption orders, newest first, a page at a time")
async def list_redemptions(
    session: Session, program_id: Id | None = None,
    status: Literal["pending", "completed", "failed", "cancelled"] | None = None, contact_id: Id | None = None,
    before: Annotated[str | None, Query(max_length=100, description="Return orders older than this order id "
                                                                    "(a page's `next_before`).")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> RedemptionPage:
    found = await redemptions.list_redemptions(session, program_id=program_id, status=status, contact_id=contact_id,
                                               before=before, limit=limit)
    return RedemptionPage(items=[_out(o) for o in found],
                          next_before=found[-1].order_id if len(found) == limit else None)


@router.get("/v1/redemptions/{order_id}", response_model=RedemptionOut, dependencies=[Reader],
            summary="An order's status: pending, completed, failed (compensated) or cancelled; a coupon reward's codes")
async def get_redemption(order_id: str, session: Session) -> RedemptionOut:
    return _out(await redemptions.get_redemption(session, order_id))
