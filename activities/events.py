"""Event pipeline operations activities: one bounded prune chunk per call, in its own transaction.

The retention windows come from settings (injected), not from the workflow input, so changing
`NUDGE_EVENT_DEDUPE_WINDOW_DAYS` and friends takes effect on the next run without touching the Schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from store.db import transaction
from store.events.prune import PRUNERS, TABLES  # TABLES, in order, is also what a prune workflow walks


@dataclass
class PruneChunk:
    table: str  # one of TABLES
    now: datetime
    limit: int = 10_000


@dataclass(frozen=True)
class Retention:
    outbox: timedelta = timedelta(days=7)
    dedupe: timedelta = timedelta(days=30)
    transitions: timedelta = timedelta(days=90)

    @classmethod
    def from_days(cls, *, outbox: int, dedupe: int, transitions: int) -> Retention:
        return cls(timedelta(days=outbox), timedelta(days=dedupe), timedelta(days=transitions))


class EventsOpsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], retention: Retention | None = None) -> None:
        self.sessions = sessions
        self.retention = retention or Retention()

    @activity.defn
    async def prune_chunk(self, chunk: PruneChunk) -> int:
        """Delete up to `chunk.limit` of the oldest prunable rows of one table; how many went."""
        pruner = PRUNERS.get(chunk.table)
        if pruner is None:
            raise ApplicationError(f"unknown table {chunk.table!r}; expected one of {TABLES}",
                                   non_retryable=True)
        cutoff = chunk.now - getattr(self.retention, chunk.table)
        async with transaction(self.sessions) as session:
            return await pruner(session, cutoff, chunk.limit)
