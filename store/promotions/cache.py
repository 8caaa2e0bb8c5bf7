"""The active rule set, cached in process with version-based invalidation (seed 002: local caches kept consistent).

Every change to promotions or coupon templates bumps `promotions_version` in its own transaction. A process polls
that one-row table at most every `POLL_SECONDS` (only when a quote asks, so an idle process reads nothing) and
re-reads the rule set only when the version moved: a change is visible to every API process within a second, and
a quote does no database read for the rule set. A write in this process also marks the cache for a poll on its
next use, so a client that changes a promotion and quotes at once sees its own change.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.promotions.index import RuleIndex
from domain.promotions.model import Promotion
from store.promotions.inventory import budget_subject, promotion_subject
from store.promotions.promotions import active_rule_set, current_version, public_templates

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class RuleSet:
    version: int
    promotions: tuple[Promotion, ...]
    public_codes: dict[str, tuple[int, datetime | None, datetime | None]] = field(default_factory=dict)
    loaded_at: float = 0.0
    # Prepared once per version, not per quote: the engine's index, and what the facts query asks about.
    index: RuleIndex = field(init=False)
    ids: tuple[int, ...] = field(init=False)
    subjects: tuple[str, ...] = field(init=False)
    programs: tuple[int, ...] = field(init=False)
    # The same two lists as Postgres array literals: psycopg dumps a list of 200 strings element by element
    # (regular expressions per element), which cost a quote more CPU than the rest of its facts query.
    subjects_array: str = field(init=False)
    ids_array: str = field(init=False)

    def __post_init__(self) -> None:
        ids = tuple(sorted(p.id for p in self.promotions))
        object.__setattr__(self, "index", RuleIndex(self.promotions))
        object.__setattr__(self, "ids", ids)
        subjects = tuple(s for i in ids for s in (promotion_subject(i), budget_subject(i)))
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "subjects_array", "{" + ",".join(subjects) + "}")  # `kind:id`: nothing to quote
        object.__setattr__(self, "ids_array", "{" + ",".join(map(str, ids)) + "}")
        object.__setattr__(self, "programs", tuple(sorted({p.program_id for p in self.promotions
                                                           if p.program_id is not None})))


class RuleSetCache:
    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.rules: RuleSet | None = None
        self.checked = 0.0
        self.loads = 0
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Poll the version on the next use (after this process changed something)."""
        self.checked = 0.0

    async def current(self, sessions: async_sessionmaker[AsyncSession]) -> RuleSet:
        if self.rules is not None and time.monotonic() - self.checked < self.poll_seconds:
            return self.rules
        async with self._lock:
            if self.rules is not None and time.monotonic() - self.checked < self.poll_seconds:
                return self.rules
            async with sessions() as session:
                version = await current_version(session)
            if self.rules is None or version != self.rules.version:
                async with sessions() as session:
                    self.rules = await self._load(session)
            self.checked = time.monotonic()
            return self.rules

    async def _load(self, session: AsyncSession) -> RuleSet:
        # Read in one repeatable snapshot with the version, so the set matches the version it is cached under.
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        version = await current_version(session)
        promotions = tuple(await active_rule_set(session, datetime.now(UTC)))
        self.loads += 1
        return RuleSet(version, promotions, await public_templates(session), time.monotonic())


# One per process: the API's quotes and orders share it.
RULES = RuleSetCache()
