"""The active rule set, cached in process with version-based invalidation (seed 002: local caches kept consistent).

Every change to promotions or coupon templates bumps `promotions_version` in its own transaction and NOTIFYs
`promotions_version` with the new version (sent when it commits). Each API process listens on one dedicated
connection (`RuleSetCache.listen`): a version it has not loaded makes its next quote re-read the rule set, so a
change is seen across processes as soon as the notification arrives, and between changes a quote reads nothing for
the rule set (a version poll every `LISTENING_POLL_SECONDS` is the safety net). While the listener is down (not
started, or its connection dropped and is being re-opened) the cache polls that one-row table at most every
`POLL_SECONDS`, only when a quote asks, so a change is still seen within a second; the listener, once back, makes
the next quote poll in case it missed one. A write in this process also marks the cache for a poll on its next
use, so a client that changes a promotion and quotes at once sees its own change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.promotions.index import RuleIndex
from domain.promotions.model import Promotion
from store.db import plain_url
from store.promotions.inventory import budget_subject, promotion_subject
from store.promotions.promotions import active_rule_set, current_version, public_templates

POLL_SECONDS = 0.5
LISTENING_POLL_SECONDS = 30.0
RETRY_SECONDS = 1.0  # between attempts to re-open the listener's connection
CHANNEL = "promotions_version"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuleSet:
    version: int
    promotions: tuple[Promotion, ...]
    public_codes: dict[str, tuple[int, datetime | None, datetime | None]] = field(default_factory=dict)
    loaded_at: float = 0.0
    stocked: frozenset[str] | None = None  # the `promotion:{id}` subjects with stock rows; None: ask for all
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
        # What the facts query asks about: stock of the promotions that have a stock row, budget spent of those
        # with a budget, and the contact's use of those with a per-customer limit (the engine reads nothing else).
        subjects = tuple(s for p in sorted(self.promotions, key=lambda p: p.id) for s in (
            *([promotion_subject(p.id)] if self.stocked is None or promotion_subject(p.id) in self.stocked else []),
            *([budget_subject(p.id)] if p.budget is not None else [])))
        limited = [p.id for p in sorted(self.promotions, key=lambda p: p.id) if p.per_user_limit is not None]
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "subjects_array", "{" + ",".join(subjects) + "}")  # `kind:id`: nothing to quote
        object.__setattr__(self, "ids_array", "{" + ",".join(map(str, limited)) + "}")
        object.__setattr__(self, "programs", tuple(sorted({p.program_id for p in self.promotions
                                                           if p.program_id is not None})))


class RuleSetCache:
    def __init__(self, poll_seconds: float = POLL_SECONDS,
                 listening_poll_seconds: float = LISTENING_POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.listening_poll_seconds = listening_poll_seconds
        self.rules: RuleSet | None = None
        self.checked = 0.0
        self.loads = 0
        self.listeners: set[int] = set()  # backend pids of the live LISTEN connections feeding this cache
        self.heard = 0  # notifications received
        self.newest = 0  # the newest version they announced
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        """Poll the version on the next use (after this process changed something)."""
        self.checked = 0.0

    def _heard(self, version: int) -> None:
        self.heard += 1
        self.newest = max(self.newest, version)

    def _fresh(self) -> bool:
        # A version heard of and not loaded yet (even one committed while a reload was reading) is never fresh.
        every = self.listening_poll_seconds if self.listeners else self.poll_seconds
        return (self.rules is not None and self.rules.version >= self.newest
                and time.monotonic() - self.checked < every)

    async def current(self, sessions: async_sessionmaker[AsyncSession]) -> RuleSet:
        if self._fresh():
            return self.rules  # type: ignore[return-value]  # _fresh: loaded
        async with self._lock:
            if self._fresh():
                return self.rules  # type: ignore[return-value]
            async with sessions() as session:
                version = await current_version(session)
            if self.rules is None or version != self.rules.version:
                async with sessions() as session:
                    self.rules = await self._load(session)
            self.checked = time.monotonic()
            return self.rules

    async def listen(self, database_url: str, *, retry_seconds: float = RETRY_SECONDS) -> None:
        """LISTEN for new versions on one dedicated connection until cancelled, re-opening it when it drops
        (polling covers the gap; the wait between attempts doubles up to 30 s while the database is away)."""
        wait = retry_seconds
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        plain_url(database_url), autocommit=True, application_name="nudge promotions cache") as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    pid = conn.info.backend_pid
                    self.listeners.add(pid)
                    self.checked = 0.0  # a change may have come while nobody listened
                    wait = retry_seconds
                    try:
                        async for note in conn.notifies():
                            with contextlib.suppress(ValueError):
                                self._heard(int(note.payload))
                    finally:
                        self.listeners.discard(pid)
            except psycopg.Error as exc:
                log.warning("promotions cache: the listener's connection failed (%s); polling every %.1f s until "
                            "it is back", exc, self.poll_seconds)
            await asyncio.sleep(wait)
            wait = min(30.0, wait * 2)

    async def _load(self, session: AsyncSession) -> RuleSet:
        # Read in one repeatable snapshot with the version, so the set matches the version it is cached under.
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        version = await current_version(session)
        promotions = tuple(await active_rule_set(session, datetime.now(UTC)))
        # A promotion's stock row is created or changed in the transaction that bumps the version: this snapshot
        # holds every one this version has.
        stocked = frozenset(await session.scalars(text(
            "SELECT DISTINCT subject FROM promotion_stock_slots WHERE subject = ANY(CAST(:s AS text[]))"),
            {"s": [promotion_subject(p.id) for p in promotions]}))
        self.loads += 1
        return RuleSet(version, promotions, await public_templates(session), time.monotonic(), stocked)


# One per process: the API's quotes and orders share it.
RULES = RuleSetCache()
