"""Reward notices out through the channels domain: the default chain `["inbox"]` writes the in-app messages
straight through `InboxChannel` (one statement per batch, idempotent per (contact, `notify:{reference}`)); any
other chain (`["push", "inbox"]`) goes through `DeliveryService.send`, which records one delivery plan per notice
under the same key and walks the fallback chain (receipts, retries, the window sweep are its business)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.channels.delivery import DeliveryService
from activities.channels.inbox import InboxChannel
from channels.base import Message
from domain.tasks.notices import DEFAULT_CHAIN, Notice
from store.channels.records import Step

TOPIC = "rewards"


class RewardNotifier:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], delivery: DeliveryService | None = None) -> None:
        self.inbox = InboxChannel(sessions)
        self.delivery = delivery

    async def send(self, notices: Sequence[Notice]) -> int:
        """Send the notices; how many were handed on. Idempotent: a retried call sends nothing twice."""
        direct = [n for n in notices if n.chain == DEFAULT_CHAIN]
        chained = [n for n in notices if n.chain and n.chain != DEFAULT_CHAIN]
        if direct:
            refused = [r for r in await self.inbox.send_many([
                Message(key=n.key, to=str(n.contact_id), subject=n.title, text=n.body, data=n.content()["data"])
                for n in direct]) if not r.accepted]
            if refused:
                raise ApplicationError(f"the inbox refused {len(refused)} notices: {refused[0].error}",
                                       type="NoticeRefused")
        if chained:
            if self.delivery is None:
                raise ApplicationError("no delivery service for channel chains in this worker", type="NoChannels")
            # Transactional: a reward notice is account activity the contact earned, not marketing, so quiet hours,
            # frequency caps and marketing opt-outs do not hold it back; suppressed addresses still fall through.
            await self.delivery.send([Step(n.contact_id, n.key, list(n.chain), {c: n.content() for c in n.chain},
                                           topic=TOPIC, transactional=True) for n in chained])
        return len(direct) + len(chained)
