"""The points economy of one program, for the dashboard: what was issued, redeemed and expired, what is still
owed, and what reconciliation left for a person to look at.

All of it is read in one REPEATABLE READ snapshot, so the tiles, the chart and the tables describe the same
moment and agree with each other. Totals come from the same places reconciliation checks: the sharded
system balances (their sum per account is what every posting moved into or out of it), the users' balance
rows (the liability) and pending holds. The monthly chart reads the postings' own receipts (`entries`,
every side of every posting): retention archives and rolls up *entry rows* only, postings stay, so months
older than the retention window are counted the same way as recent ones — and summed over all months they
equal the system balances (`Economy.chart_agrees`). "Expiring soon" is `ExpiryPolicy.expiring_soon`, applied
to bucket totals per earned month (the rule is a sum over buckets, so summing accounts first changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from domain.ledger.postings import ExpiryPolicy, Month, SystemAccount, month_of
from store.ledger.models import Program
from store.ledger.programs import list_programs
from store.ledger.reconcile import Finding, list_findings

CHART_MONTHS = 12
FLOWS = (SystemAccount.ISSUANCE, SystemAccount.REDEMPTION, SystemAccount.EXPIRY)


@dataclass(frozen=True)
class MonthFlow:
    month: Month
    issued: int
    redeemed: int
    expired: int


@dataclass(frozen=True)
class TopBalance:
    contact_id: int
    balance: int
    expiring_soon: int


@dataclass(frozen=True)
class Economy:
    program: Program
    programs: Sequence[Program]
    issued: int           # minus the issuance account: every point ever credited
    redeemed: int         # the redemption account: debits plus committed holds
    expired: int          # the expiry account
    forfeited: int        # the breakage account: what erased or closed accounts still held
    adjusted: int         # the adjustment account, signed (what corrections took out of users' accounts)
    liability: int        # the users' balance rows: what the program still owes
    held: int             # pending holds: reserved, not yet spent or given back
    holds: int            # how many holds are pending
    expiring_soon: int    # what expires at the end of this month
    expiring_by: Month | None  # the month at whose end it expires (None: the program's points never expire)
    accounts: int         # accounts with a balance
    months: list[MonthFlow]
    chart_agrees: bool    # all-time sums of the postings' receipts equal the system balances
    largest: list[TopBalance]
    open_findings: int
    findings: list[Finding]


SYSTEM = """
    SELECT account, sum(balance)::bigint AS balance FROM ledger_system_balances WHERE program_id = :p GROUP BY account
"""
USERS = """
    SELECT coalesce(sum(balance), 0)::bigint AS liability, count(*) FILTER (WHERE balance > 0) AS accounts
    FROM ledger_accounts WHERE program_id = :p
"""
HOLDS = """
    SELECT coalesce(sum(amount), 0)::bigint AS held, count(*) AS n FROM ledger_holds
    WHERE program_id = :p AND status = 'pending'
"""
BUCKETS_BY_MONTH = """
    SELECT month, sum(remaining)::bigint AS remaining FROM ledger_buckets
    WHERE program_id = :p AND remaining > 0 GROUP BY month
"""
# Each posting's receipt lists every side it moved (system accounts included); `restate` postings move nothing.
# Grouped over all months (a few rows per month): the chart takes its window, the all-time sums check it.
# One pass, no materialised CTE: 0.7 s for 500k postings here (per-row month arithmetic and a CTE read twice: 2.4 s).
FLOWS_BY_MONTH = """
    SELECT date_trunc('month', p.created_at AT TIME ZONE 'UTC') AS month, x->>0 AS account,
           sum((x->>1)::bigint)::bigint AS amount
    FROM ledger_postings p CROSS JOIN LATERAL jsonb_array_elements(p.entries) x
    WHERE p.program_id = :p AND x->>0 = ANY(CAST(:accounts AS text[]))
    GROUP BY 1, 2
"""
LARGEST = """
    SELECT contact_id, balance FROM ledger_accounts WHERE program_id = :p AND balance > 0
    ORDER BY balance DESC, contact_id LIMIT :limit
"""
BUCKETS_OF = """
    SELECT contact_id, month, remaining FROM ledger_buckets
    WHERE program_id = :p AND contact_id = ANY(CAST(:cs AS bigint[])) AND remaining > 0
"""
OPEN_COUNT = "SELECT count(*) FROM ledger_findings WHERE program_id = :p AND status = 'open'"


async def points_dashboard(session: AsyncSession, program_id: int | None, *, now: datetime,
                           findings_limit: int = 50, top: int = 10) -> Economy | None:
    """The economy of `program_id` (None: the first program), or None when there is no program at all.

    Must start the session's transaction: it takes one snapshot for everything it reads.
    """
    await session.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
    programs = await list_programs(session)
    if program_id is None:
        if not programs:
            return None
        program = programs[0]
    else:
        found = [p for p in programs if p.id == program_id]
        if not found:
            raise NotFound(f"points program {program_id} does not exist")
        program = found[0]
    p = {"p": program.id}
    today = month_of(now)
    system = {r.account: int(r.balance) for r in await session.execute(text(SYSTEM), p)}
    users = (await session.execute(text(USERS), p)).one()
    holds = (await session.execute(text(HOLDS), p)).one()
    by_month = {r.month: int(r.remaining) for r in await session.execute(text(BUCKETS_BY_MONTH), p)}
    months, totals = await _flows(session, program.id, today)
    policy = program.policy
    return Economy(
        program=program, programs=programs,
        issued=-system.get(SystemAccount.ISSUANCE, 0), redeemed=system.get(SystemAccount.REDEMPTION, 0),
        expired=system.get(SystemAccount.EXPIRY, 0), forfeited=system.get(SystemAccount.BREAKAGE, 0),
        adjusted=system.get(SystemAccount.ADJUSTMENT, 0),
        liability=int(users.liability), accounts=int(users.accounts), held=int(holds.held), holds=int(holds.n),
        expiring_soon=policy.expiring_soon(by_month, today),
        expiring_by=None if policy.months is None else today,
        months=months,
        chart_agrees=all(totals.get(a, 0) == system.get(a, 0) for a in FLOWS),
        largest=await _largest(session, program.id, policy, today, top),
        open_findings=int(await session.scalar(text(OPEN_COUNT), p) or 0),
        findings=await list_findings(session, status="open", class_=None, program_id=program.id, before=None,
                                     limit=findings_limit),
    )


async def _flows(session: AsyncSession, program_id: int, today: Month) -> tuple[list[MonthFlow], dict[str, int]]:
    """Issued, redeemed and expired per posted month for the last `CHART_MONTHS` months, and all-time sums."""
    rows = await session.execute(text(FLOWS_BY_MONTH), {"p": program_id, "accounts": [str(a) for a in FLOWS]})
    per_month: dict[tuple[Month, str], int] = {}
    totals: dict[str, int] = {}
    for r in rows:
        per_month[(month_of(r.month), r.account)] = int(r.amount)
        totals[r.account] = totals.get(r.account, 0) + int(r.amount)
    months = [MonthFlow(m, issued=-per_month.get((m, SystemAccount.ISSUANCE), 0),
                        redeemed=per_month.get((m, SystemAccount.REDEMPTION), 0),
                        expired=per_month.get((m, SystemAccount.EXPIRY), 0))
              for m in range(today - CHART_MONTHS + 1, today + 1)]
    return months, totals


async def _largest(session: AsyncSession, program_id: int, policy: ExpiryPolicy, today: Month,
                   limit: int) -> list[TopBalance]:
    top = (await session.execute(text(LARGEST), {"p": program_id, "limit": limit})).all()
    buckets: dict[int, dict[Month, int]] = {}
    for r in await session.execute(text(BUCKETS_OF), {"p": program_id, "cs": [t.contact_id for t in top]}):
        buckets.setdefault(r.contact_id, {})[r.month] = int(r.remaining)
    return [TopBalance(t.contact_id, int(t.balance), policy.expiring_soon(buckets.get(t.contact_id, {}), today))
            for t in top]
