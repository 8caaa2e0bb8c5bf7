"""A journey's grant node: its rewards checked on save and given at runtime, inside the move's transaction and
under the effect's key `journey:{journey}:{version}:{contact}:{entry}:{node}` — points through the ledger's posting
service (the key is the ledger reference), a coupon through Promotions' `issue_coupon` (the key is the coupon's
reference: the same reference returns the coupon issued the first time), so a retried or replayed move grants
nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import DomainError
from domain.journeys.graph import Grant, Graph, InvalidJourney
from domain.ledger.postings import Kind, Request
from store.ledger.postings import apply
from store.ledger.receipts import Receipt, Submission
from store.promotions.coupons import issue_coupon


@dataclass(frozen=True)
class Reward:
    """One grant node's reward for one contact."""

    contact_id: int
    key: str
    node: str
    program_id: int | None = None
    amount: int | None = None
    coupon_template_id: int | None = None


async def check(session: AsyncSession, graph: Graph) -> None:
    """Every coupon a grant node names exists (one statement): InvalidJourney naming the node otherwise (422)."""
    wanted = {n.id: n.coupon_template_id for n in graph.nodes.values()
              if isinstance(n, Grant) and n.coupon_template_id is not None}
    if not wanted:
        return
    known = set((await session.scalars(text("SELECT id FROM coupon_templates WHERE id = ANY(:ids)"),
                                       {"ids": sorted(set(wanted.values()))})).all())
    for node_id, template_id in wanted.items():
        if template_id not in known:
            raise InvalidJourney(f"node {node_id!r}: coupon template {template_id} does not exist")


async def grant(session: AsyncSession, journey_id: int, rewards: Sequence[Reward], now: datetime) -> list[str | None]:
    """Give each reward; per reward None (given, now or by an earlier attempt under the same key) or why it was
    refused. Points go as one posting batch. Coupons are issued one by one through Promotions' service, each in a
    savepoint, so one Promotions refuses (template paused or ended, out of stock, the contact's limit) fails alone."""
    why: list[str | None] = [None] * len(rewards)
    points = [(i, r) for i, r in enumerate(rewards) if r.coupon_template_id is None]
    if points:
        outcomes = await apply(session, [
            Submission(r.program_id or 0, Request(r.key, Kind.CREDIT, r.contact_id, r.amount or 0,
                                                  memo=f"journey {journey_id} node {r.node}"))
            for _, r in points], now=now)
        for (i, _), outcome in zip(points, outcomes, strict=True):
            if not isinstance(outcome, Receipt):
                why[i] = f"points refused: {outcome}"
    for i, r in enumerate(rewards):
        if r.coupon_template_id is None:
            continue
        try:
            async with session.begin_nested():
                await issue_coupon(session, r.coupon_template_id, r.contact_id, r.key, now=now)
        except DomainError as exc:
            why[i] = f"coupon not issued: {exc}"
    return why
