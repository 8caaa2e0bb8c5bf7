"""OrderWorkflow on the time-skipping test server: an abandoned order's coupon and stock come back when its hold
times out; a confirmed order keeps them; cancelling the workflow releases them too."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowFailureError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.promotions.orders import OrderActivities
from domain.promotions.model import Line
from store.db import transaction
from store.promotions import coupons, orders, promotions
from store.promotions.cache import RuleSetCache
from tests.skipping import time_skipping
from workflows.promotions.orders import OrderInput, OrderWorkflow, workflow_id

QUEUE = "test-promotions"


@pytest.fixture(scope="module")
async def env() -> AsyncIterator[WorkflowEnvironment]:
    async with time_skipping() as environment:
        yield environment


async def _order(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, str, int]:
    """A pending order holding a coupon and one unit of its promotion's stock: (order id, coupon code, promotion)."""
    now = datetime.now(UTC)
    async with transaction(sessions) as s:
        template = await promotions.create_template(s, name="wf", public_code=None, valid_from=None,
                                                    valid_until=None, valid_days=7, per_contact_limit=None,
                                                    stock=None)
        promotion = await promotions.create_promotion(
            s, {"name": "wf", "kind": "amount_off", "amount": 100, "coupon_template_id": template.id}, stock=1)
        contact = int(await s.scalar(text("INSERT INTO contacts (user_id) VALUES (:u) RETURNING id"),
                                     {"u": f"wf-{uuid.uuid4().hex}"}) or 0)
        coupon = await coupons.issue_coupon(s, template.id, contact, "wf", now=now)
    order_id = f"wf-{uuid.uuid4().hex[:8]}"
    rules = await RuleSetCache().current(sessions)
    async with transaction(sessions) as s:
        order, _ = await orders.place_order(
            s, rules, order_id, orders.QuoteRequest((Line("x", "y", 1_000, 1),), contact_id=contact,
                                                    coupons=(coupon.code,)), now=now, hold_seconds=900)
    assert order.discount == 100
    return order_id, coupon.code, promotion.id


async def _state(sessions: async_sessionmaker[AsyncSession], order_id: str, code: str,
                 promotion: int) -> tuple[str, str, int | None]:
    async with sessions() as s:
        return ((await orders.get_order(s, order_id)).status, (await coupons.get_coupon(s, code)).state,
                (await promotions.get_promotion(s, promotion)).stock_left)


async def test_an_abandoned_order_is_released_when_its_hold_times_out(
        env: WorkflowEnvironment, sessions: async_sessionmaker[AsyncSession]) -> None:
    order_id, code, promotion = await _order(sessions)
    assert await _state(sessions, order_id, code, promotion) == ("pending", "reserved", 0)
    async with Worker(env.client, task_queue=QUEUE, workflows=[OrderWorkflow],
                      activities=[OrderActivities(sessions).release_order]):
        result = await env.client.execute_workflow(OrderWorkflow.run, OrderInput(order_id, 900),
                                                   id=workflow_id(order_id), task_queue=QUEUE)
    assert result == "expired"
    assert await _state(sessions, order_id, code, promotion) == ("expired", "issued", 1)
    history = await env.client.get_workflow_handle(workflow_id(order_id)).fetch_history()
    await Replayer(workflows=[OrderWorkflow]).replay_workflow(history)  # deterministic


async def test_a_confirmed_order_keeps_what_it_took(env: WorkflowEnvironment,
                                                    sessions: async_sessionmaker[AsyncSession]) -> None:
    order_id, code, promotion = await _order(sessions)
    async with Worker(env.client, task_queue=QUEUE, workflows=[OrderWorkflow],
                      activities=[OrderActivities(sessions).release_order]):
        handle = await env.client.start_workflow(OrderWorkflow.run, OrderInput(order_id, 900),
                                                 id=workflow_id(order_id), task_queue=QUEUE)
        async with transaction(sessions) as s:
            await orders.confirm(s, order_id, now=datetime.now(UTC))
        await handle.signal(OrderWorkflow.settled, "confirmed")
        assert await handle.result() == "confirmed"
    assert await _state(sessions, order_id, code, promotion) == ("confirmed", "redeemed", 0)


async def test_cancelling_the_workflow_releases_the_order(env: WorkflowEnvironment,
                                                          sessions: async_sessionmaker[AsyncSession]) -> None:
    order_id, code, promotion = await _order(sessions)
    async with Worker(env.client, task_queue=QUEUE, workflows=[OrderWorkflow],
                      activities=[OrderActivities(sessions).release_order]):
        handle = await env.client.start_workflow(OrderWorkflow.run, OrderInput(order_id, 86_400),
                                                 id=workflow_id(order_id), task_queue=QUEUE)
        await handle.query(OrderWorkflow.current_outcome)  # started and waiting
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert await _state(sessions, order_id, code, promotion) == ("cancelled", "issued", 1)
