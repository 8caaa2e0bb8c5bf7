"""Reward notices to send (domain/tasks/notices.py): the credited grants of an issuance batch (a toast each), and
grants not told yet — claimable ones (a popup each), issued ones the saga did not tell (a toast) — each marked
`notified_at` once handed to the channels. Set-based: one statement per batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.promotions.coupons import display
from domain.tasks.notices import DEFAULT_CHAIN, Notice, reward_notice

_FIELDS = """
    SELECT g.id, g.reference, g.contact_id, g.task_id, g.amount, g.status, g.claim_deadline, t.name AS task_name,
           t.definition->'notify' AS chain, coalesce(p.unit, 'points') AS unit, g.reward_type, g.coupon_codes,
           c.name AS coupon_name
    FROM task_grants g JOIN tasks t ON t.id = g.task_id LEFT JOIN ledger_programs p ON p.id = g.program_id
    LEFT JOIN coupon_templates c ON c.id = g.coupon_template_id
"""


def _notice(row: Any) -> Notice:
    m = row._mapping
    chain = DEFAULT_CHAIN if m["chain"] is None else tuple(m["chain"])
    return reward_notice(reference=m["reference"], contact_id=m["contact_id"], task_id=m["task_id"],
                         task_name=m["task_name"], amount=int(m["amount"]), unit=m["unit"],
                         claimable=m["status"] == "claimable", claim_deadline=m["claim_deadline"], chain=chain,
                         coupon=(m["coupon_name"] or "coupon") if m["reward_type"] == "coupon" else None,
                         codes=[display(c) for c in m["coupon_codes"] or ()])


async def credited_in_batch(session: AsyncSession, batch: str) -> tuple[list[int], list[Notice]]:
    """Toasts for the batch's credited grants (a held or failed grant is not credited: nothing to tell yet; a
    claimed one was told by its popup): their ids (to mark) and the notices of those whose task names a chain."""
    rows = (await session.execute(text(_FIELDS + """
        WHERE g.batch = :b AND g.status IN ('issuing', 'issued') AND g.notified_at IS NULL ORDER BY g.id
    """), {"b": batch})).all()
    return [r.id for r in rows], [n for n in map(_notice, rows) if n.chain]


async def untold(session: AsyncSession, *, limit: int) -> tuple[list[int], list[Notice]]:
    """Grants the contact has not been told of: claimable ones (a popup) and issued ones the saga did not tell (a
    risk hold released later, a notice step that failed) — a toast. Locked (SKIP LOCKED: two dispatchers share
    the work); their ids (to mark) and the notices of those whose task names a chain."""
    rows = (await session.execute(text(_FIELDS + """
        WHERE g.status IN ('claimable', 'issued') AND g.notified_at IS NULL
        ORDER BY g.id LIMIT :n FOR UPDATE OF g SKIP LOCKED
    """), {"n": limit})).all()
    return [r.id for r in rows], [n for n in map(_notice, rows) if n.chain]


async def mark_told(session: AsyncSession, ids: Sequence[int], *, now: datetime) -> None:
    if ids:
        await session.execute(text("UPDATE task_grants SET notified_at = :now WHERE id = ANY(:ids)"),
                              {"ids": list(ids), "now": now})
