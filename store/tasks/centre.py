"""The contact-facing task centre (seed 000's 任务中心): the active tasks a contact can take part in, with progress in
the current period, rewards waiting to be claimed or being issued (and the coupons granted this period, with their
codes), and time left. Four statements per request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from domain.tasks.progress import ProgressStatus
from store.contacts.profiles import follow
from store.tasks.definitions import COLUMNS, Task, task_of
from store.tasks.grants import Grant, grant_of

MAX_TASKS = 200
MAX_REWARDS = 1000


@dataclass(frozen=True)
class CentreItem:
    task: Task
    period_key: str | None
    period_ends_at: datetime | None
    progress: int
    completions: int
    status: int
    time_left_seconds: int | None
    rewards: list[Grant]


async def task_centre(session: AsyncSession, contact_id: int, *, now: datetime) -> tuple[int, list[CentreItem]]:
    contact_id = await follow(session, contact_id)
    seen = await session.scalar(text("SELECT created_at FROM contacts WHERE id = :c"), {"c": contact_id})
    if seen is None:
        raise NotFound(f"contact {contact_id} does not exist")
    tasks = [task_of(r) for r in await session.execute(text(
        f"SELECT {COLUMNS} FROM tasks WHERE status = 'active' ORDER BY id LIMIT {MAX_TASKS}"))]
    segments = sorted({t.definition.segment_id for t in tasks if t.definition.segment_id})
    member = set(await session.scalars(text("""
        SELECT segment_id FROM segment_members WHERE contact_id = :c AND segment_id = ANY(:s) AND exited_at IS NULL
    """), {"c": contact_id, "s": segments})) if segments else set()
    tasks = [t for t in tasks if t.definition.is_live(now) and (not t.definition.segment_id
                                                                 or t.definition.segment_id in member)]
    keys = {t.id: t.definition.period.key(now, seen) for t in tasks}
    rows = await session.execute(text("""
        SELECT task_id, period_key, progress, completions, status FROM task_progress
        WHERE contact_id = :c AND task_id = ANY(:t)
    """), {"c": contact_id, "t": [t.id for t in tasks]})
    progress = {(r.task_id, r.period_key): r for r in rows}
    waiting: dict[int, list[Grant]] = {}
    # Rewards waiting, and the coupons granted in the current period (their codes, for the app to show).
    for r in await session.execute(text("""
        SELECT * FROM task_grants WHERE contact_id = :c AND task_id = ANY(:t)
          AND (status IN ('claimable', 'pending', 'issuing', 'held') OR (status = 'issued' AND reward_type = 'coupon'))
        ORDER BY id DESC LIMIT :n
    """), {"c": contact_id, "t": [t.id for t in tasks], "n": MAX_REWARDS}):
        if r.status != "issued" or r.period_key == keys.get(r.task_id):
            waiting.setdefault(r.task_id, []).insert(0, grant_of(r))
    items = []
    for t in tasks:
        key = keys[t.id]
        row = progress.get((t.id, key)) if key else None
        ends = t.definition.period.bounds(key, seen)[1] if key else None
        if t.definition.ends_at and (ends is None or t.definition.ends_at < ends):
            ends = t.definition.ends_at
        left = int((ends - now).total_seconds()) if ends and ends.year < 9999 else None
        items.append(CentreItem(t, key, ends if left is not None else None, row.progress if row else 0,
                                row.completions if row else 0,
                                row.status if row else int(ProgressStatus.INITIAL), left, waiting.get(t.id, [])))
    return contact_id, items
