"""Reward stock: a reservation that cannot be met says the reward is out of stock, and how many are left."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.ledger import programs, redemptions


async def test_a_reservation_beyond_the_stock_says_the_reward_is_out_of_stock(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with transaction(sessions) as s:
        program = await programs.create_program(s, name=f"stock-{uuid.uuid4().hex[:8]}", unit="points",
                                                expiry_months=None, retention_months=6)
        empty = await redemptions.create_reward(s, program_id=program.id, name="Mug", cost=10, stock=0)
        few = await redemptions.create_reward(s, program_id=program.id, name="Cap", cost=10, stock=2)
    async with transaction(sessions) as s:
        with pytest.raises(redemptions.OutOfStock, match=rf"^reward {empty.id} \(Mug\) is out of stock$"):
            await redemptions.reserve(s, f"o-{uuid.uuid4().hex[:6]}", empty.id, 1)
    async with transaction(sessions) as s:
        with pytest.raises(redemptions.OutOfStock,
                           match=rf"^reward {few.id} \(Cap\) is out of stock for 3: 2 left$"):
            await redemptions.reserve(s, f"o-{uuid.uuid4().hex[:6]}", few.id, 3)
    async with sessions() as s:
        assert (await redemptions.get_reward(s, few.id)).stock == 2
