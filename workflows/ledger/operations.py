"""Ledger operations workflows, run on Temporal Schedules and on demand.

ReconciliationWorkflow (仲裁): void timed-out holds, then check every account, every posting and every
program page by page, then reward grants ↔ postings. Known findings are fixed as they are found; the rest
wait in the review queue. ExpiryWorkflow: due buckets to the expiry account, daily or on demand
(`POST /v1/ledger/expiry-runs`); each bucket month's expiry is posted once per contact, so the daily runs
after the first of a month find nothing (spends and balances already ignore due buckets). RetentionWorkflow:
detail past each program's retention window to Parquet, rolled up, daily. "Now" is the
workflow's clock (or the input's), passed to every activity.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.ledger.operations import ArchiveDone, ArchiveMonth, ExpiryBatch, LedgerOpsActivities, Page, PageDone
    from domain.ledger.operations import ExpiryPage
    from workflows.schedules import IntervalPlan, ensure_interval_schedules

TASK_QUEUE = "nudge-ledger"
RECONCILE_SCHEDULE = "ledger-reconcile"
EXPIRY_SCHEDULE = "ledger-expiry"
RETENTION_SCHEDULE = "ledger-retention"
RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), backoff_coefficient=2, maximum_interval=timedelta(minutes=1))
PHASES = ("holds", "accounts", "postings", "programs", "grants")


@dataclass
class ReconcileTotals:
    holds_voided: int = 0
    accounts: int = 0
    postings: int = 0
    found: int = 0
    fixed: int = 0


@dataclass
class ReconcileInput:
    programs: list[int] | None = None  # None: every program
    page_size: int = 5000
    # Where a run that continued as new picks up.
    phase: str = "holds"
    after: int = 0
    totals: ReconcileTotals = field(default_factory=ReconcileTotals)


@workflow.defn
class ReconciliationWorkflow:
    @workflow.init
    def __init__(self, params: ReconcileInput) -> None:
        self.totals = params.totals
        self.phase = params.phase

    async def _page(self, activity: object, page: Page) -> PageDone:
        return await workflow.execute_activity_method(
            activity, page, start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY)  # type: ignore[call-overload]

    @workflow.run
    async def run(self, params: ReconcileInput) -> ReconcileTotals:
        steps = {"holds": LedgerOpsActivities.void_timed_out_holds, "accounts": LedgerOpsActivities.reconcile_accounts,
                 "postings": LedgerOpsActivities.reconcile_postings, "programs": LedgerOpsActivities.reconcile_programs,
                 "grants": LedgerOpsActivities.reconcile_grants}
        t, after = self.totals, params.after
        for phase in PHASES[PHASES.index(params.phase):]:
            self.phase = phase
            while True:
                done = await self._page(steps[phase], Page(now=workflow.now(), after=after, limit=params.page_size,
                                                           programs=params.programs))
                t.found, t.fixed = t.found + done.found, t.fixed + done.fixed
                if phase == "holds":
                    t.holds_voided += done.fixed
                elif phase == "accounts":
                    t.accounts += done.checked
                elif phase == "postings":
                    t.postings += done.checked
                # Holds: every page voids what it read, so the next page starts over until none are left.
                if done.last is None or (phase == "holds" and done.checked < params.page_size):
                    break
                after = 0 if phase == "holds" else done.last
                if workflow.info().is_continue_as_new_suggested():
                    workflow.continue_as_new(ReconcileInput(params.programs, params.page_size, phase, after, t))
            after = 0
        return t

    @workflow.query
    def progress(self) -> dict[str, object]:
        return {"phase": self.phase, "totals": self.totals}


@dataclass
class ExpiryTotals:
    programs: int = 0
    contacts: int = 0
    postings: int = 0
    points: int = 0
    refused: int = 0


@dataclass
class ExpiryInput:
    now: datetime | None = None  # None: the workflow's clock (a test or a backfill passes its own)
    programs: list[int] | None = None
    page_size: int = 1000


@workflow.defn
class ExpiryWorkflow:
    """Move what remains in due buckets to each program's expiry account, a page of contacts per activity."""

    @workflow.init
    def __init__(self, params: ExpiryInput) -> None:
        self.totals = ExpiryTotals()

    @workflow.run
    async def run(self, params: ExpiryInput) -> ExpiryTotals:
        now = params.now or workflow.now()
        programs: list[int] = await workflow.execute_activity_method(
            LedgerOpsActivities.expiry_programs, Page(now=now, programs=params.programs),
            start_to_close_timeout=timedelta(minutes=1), retry_policy=RETRY)
        t = self.totals
        for program_id in programs:
            t.programs += 1
            after = 0
            while True:
                page: ExpiryPage = await workflow.execute_activity_method(
                    LedgerOpsActivities.expire_batch, ExpiryBatch(program_id, now, after, params.page_size),
                    start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY)
                t.contacts, t.postings = t.contacts + page.contacts, t.postings + page.postings
                t.points, t.refused = t.points + page.points, t.refused + page.refused
                if page.last is None:
                    break
                after = page.last
        return t

    @workflow.query
    def progress(self) -> ExpiryTotals:
        return self.totals


@dataclass
class RetentionInput:
    now: datetime | None = None
    programs: list[int] | None = None


@dataclass
class RetentionTotals:
    months: int = 0
    rows: int = 0
    files: list[str] = field(default_factory=list)


@workflow.defn
class RetentionWorkflow:
    """Archive each program's detail older than its retention window to Parquet, then roll it up."""

    @workflow.init
    def __init__(self, params: RetentionInput) -> None:
        self.totals = RetentionTotals()

    @workflow.run
    async def run(self, params: RetentionInput) -> RetentionTotals:
        now = params.now or workflow.now()
        plan: list[ArchiveMonth] = await workflow.execute_activity_method(
            LedgerOpsActivities.retention_plan, Page(now=now, programs=params.programs),
            start_to_close_timeout=timedelta(minutes=5), retry_policy=RETRY)
        for month in plan:
            done: ArchiveDone = await workflow.execute_activity_method(
                LedgerOpsActivities.archive_month, month, start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RETRY)
            if done.path:
                self.totals.months += 1
                self.totals.rows += done.rows
                self.totals.files.append(done.path)
        return self.totals


async def ensure_schedules(client: Client, *, reconcile_every: timedelta = timedelta(hours=1),
                           expire_every: timedelta = timedelta(days=1)) -> None:
    """Create the ledger's schedules if they do not exist yet (idempotent; safe from every process)."""
    plans = ((RECONCILE_SCHEDULE, ReconciliationWorkflow.run, ReconcileInput(), reconcile_every, "reconciliation",
              "Reconcile the points ledger: balances, postings, programs; void timed-out holds"),
             (EXPIRY_SCHEDULE, ExpiryWorkflow.run, ExpiryInput(), expire_every, "expiry",
              "Expire points in due monthly buckets"),
             (RETENTION_SCHEDULE, RetentionWorkflow.run, RetentionInput(), expire_every, "retention",
              "Archive ledger detail past retention to Parquet and roll it up"))
    await ensure_interval_schedules(client, (IntervalPlan(sid, run, arg, every, TASK_QUEUE, kind, summary)
                                             for sid, run, arg, every, kind, summary in plans))
