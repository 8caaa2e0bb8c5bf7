"""Ledger operations activities: reconciliation pages, expiry batches, detail retention.

Each activity does one bounded page of work in its own transaction and returns where to continue, so a
workflow can loop over millions of accounts and a retried activity repeats at most one page (every
write it makes is keyed: finding subjects, posting references).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from domain.ledger.operations import ExpiryPage
from domain.ledger.postings import month_of
from store.db import transaction
from store.ledger import archive, expiry, reconcile
from store.ledger.programs import program_ids
from store.ledger.reconcile import GrantSource, NoGrants


@dataclass
class Page:
    now: datetime
    after: int = 0
    limit: int = 5000
    programs: list[int] | None = None


@dataclass
class PageDone:
    last: int | None  # continue after this key; None when the check is complete
    checked: int = 0
    found: int = 0
    fixed: int = 0
    detail: dict[str, int] = field(default_factory=dict)


@dataclass
class ExpiryBatch:
    program_id: int
    now: datetime
    after: int = 0
    limit: int = 1000


@dataclass
class ArchiveMonth:
    program_id: int
    month: int


@dataclass
class ArchiveDone:
    rows: int
    points: int
    path: str | None


def _done(result: reconcile.PageResult) -> PageDone:
    return PageDone(last=result.last, checked=result.checked, found=result.found, fixed=result.fixed)


class LedgerOpsActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, archive_dir: Path,
                 grants: GrantSource | None = None) -> None:
        self.sessions = sessions
        self.archive_dir = archive_dir
        self.grants: GrantSource = grants or NoGrants()

    @activity.defn
    async def void_timed_out_holds(self, page: Page) -> PageDone:
        async with transaction(self.sessions) as session:
            return _done(await reconcile.void_timed_out_holds(session, now=page.now, limit=page.limit,
                                                              programs=page.programs))

    @activity.defn
    async def reconcile_accounts(self, page: Page) -> PageDone:
        async with transaction(self.sessions) as session:
            return _done(await reconcile.check_accounts(session, after=page.after, limit=page.limit,
                                                        programs=page.programs, today=month_of(page.now)))

    @activity.defn
    async def reconcile_postings(self, page: Page) -> PageDone:
        async with transaction(self.sessions) as session:
            return _done(await reconcile.check_postings(session, after=page.after, limit=page.limit,
                                                        programs=page.programs))

    @activity.defn
    async def reconcile_programs(self, page: Page) -> PageDone:
        async with transaction(self.sessions) as session:
            return _done(await reconcile.check_programs(session, page.programs))

    @activity.defn
    async def reconcile_grants(self, page: Page) -> PageDone:
        """Reward grants ↔ postings, through the GrantSource hook (nothing to check until tasks exist)."""
        async with transaction(self.sessions) as session:
            return _done(await reconcile.check_grants(session, self.grants, programs=page.programs,
                                                      limit=page.limit, now=page.now))

    @activity.defn
    async def expiry_programs(self, page: Page) -> list[int]:
        async with self.sessions() as session:
            return await expiry.programs_with_expiry(session, page.programs)

    @activity.defn
    async def expire_batch(self, batch: ExpiryBatch) -> ExpiryPage:
        async with transaction(self.sessions) as session:
            page = await expiry.expire_page(session, batch.program_id, now=batch.now, after=batch.after,
                                            limit=batch.limit)
        return page

    @activity.defn
    async def retention_plan(self, page: Page) -> list[ArchiveMonth]:
        """The (program, month) pairs whose detail is past the retention window and not archived yet."""
        async with self.sessions() as session:
            programs = page.programs or await program_ids(session)
            return [ArchiveMonth(p, m) for p in programs
                    for m in await archive.months_due(session, p, now=page.now)]

    @activity.defn
    async def archive_month(self, month: ArchiveMonth) -> ArchiveDone:
        async with transaction(self.sessions) as session:
            done = await archive.archive_month(session, month.program_id, month.month, self.archive_dir)
        return ArchiveDone(done.rows, done.total, done.path) if done else ArchiveDone(0, 0, None)
