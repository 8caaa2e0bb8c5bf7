"""A template's per-contact limit holds under concurrency: an issue racing another for the same contact's last
allowance waits for it and is refused once it commits (two redemptions of a coupon reward at once, a task reward
beside a claim)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.promotions.coupons import CouponLimitReached, issue_coupon
from store.promotions.promotions import create_template


async def _waiting_on_a_lock(sessions: async_sessionmaker[AsyncSession], task: asyncio.Task[object]) -> None:
    for _ in range(200):
        async with sessions() as s:
            waiting = await s.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                          "AND query LIKE '%coupon_limit%'"))
        if waiting or task.done():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the second issue neither waited nor finished")


async def test_a_second_issue_for_the_last_allowance_waits_and_is_refused(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    tag = uuid.uuid4().hex[:8]
    async with transaction(sessions) as s:
        template = await create_template(s, name=f"t-{tag}", public_code=None, valid_from=None, valid_until=None,
                                         valid_days=30, per_contact_limit=1, stock=None)

    async def second() -> object:
        async with transaction(sessions) as s:
            return await issue_coupon(s, template.id, 7, f"redeem:b-{tag}#0")

    async with transaction(sessions) as first:
        await issue_coupon(first, template.id, 7, f"redeem:a-{tag}#0")
        racer = asyncio.create_task(second())
        await _waiting_on_a_lock(sessions, racer)
    with pytest.raises(CouponLimitReached):
        await racer
    async with transaction(sessions) as s:  # the same reference again is the coupon it got, not a refusal
        again = await issue_coupon(s, template.id, 7, f"redeem:a-{tag}#0")
        held = await s.scalar(text("SELECT count(*) FROM coupons WHERE template_id = :t"), {"t": template.id})
    assert again.reference == f"redeem:a-{tag}#0" and held == 1
