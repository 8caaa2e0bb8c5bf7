"""Points accounts: post to a contact's account (the API's one-posting path), look a posting up by its
reference, the account view (spendable balance, held, expiring soon, expired but not yet swept, monthly
buckets), the statement and the program's system balances. Postings themselves are applied, in batches, by
store/ledger/postings.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import NotFound
from domain.ledger.postings import Month, Request, month_of
from store.contacts.profiles import follow
from store.ledger.models import Program
from store.ledger.postings import apply, existing
from store.ledger.programs import get_program
from store.ledger.receipts import Receipt, Submission


async def post(session: AsyncSession, program_id: int, request: Request, *, now: datetime, shard: int = 0) -> Receipt:
    """One posting in the caller's transaction (the API path); raises what refused it."""
    await get_program(session, program_id)
    (outcome,) = await apply(session, [Submission(program_id, request)], now=now, shard=shard)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def receipt(session: AsyncSession, program_id: int, reference: str) -> Receipt:
    """A posting looked up by its reference."""
    found = (await existing(session, [(program_id, reference)])).get((program_id, reference))
    if found is None:
        raise NotFound(f"no posting with reference {reference!r} in program {program_id}")
    return found[1]


@dataclass(frozen=True)
class BucketView:
    month: Month
    remaining: int
    expires_after: Month | None


@dataclass(frozen=True)
class AccountView:
    program_id: int
    contact_id: int
    balance: int  # spendable: the balance row less points past their expiry that the sweep has not moved yet
    held: int
    expiring_soon: int
    expired: int  # past their expiry, not yet swept: neither spendable nor in `balance`
    buckets: list[BucketView]  # the spendable ones


async def account(session: AsyncSession, program: Program, contact_id: int, *, now: datetime) -> AccountView:
    """The account of the contact `contact_id` is about now (a merged-away id reads its survivor's account)."""
    contact_id = await follow(session, contact_id)
    balance = await session.scalar(text(
        "SELECT balance FROM ledger_accounts WHERE contact_id = :c AND program_id = :p"),
        {"c": contact_id, "p": program.id})
    if balance is None:
        exists = await session.scalar(text("SELECT 1 FROM contacts WHERE id = :c"), {"c": contact_id})
        if not exists:
            raise NotFound(f"contact {contact_id} does not exist")
    rows = await session.execute(text("""
        SELECT month, remaining FROM ledger_buckets
        WHERE contact_id = :c AND program_id = :p AND remaining > 0 ORDER BY month
    """), {"c": contact_id, "p": program.id})
    buckets = {r.month: r.remaining for r in rows}
    held = await session.scalar(text("""
        SELECT coalesce(sum(amount), 0) FROM ledger_holds
        WHERE contact_id = :c AND program_id = :p AND status = 'pending'
    """), {"c": contact_id, "p": program.id})
    policy, today = program.policy, month_of(now)
    expired = sum(policy.due(buckets, today).values())
    return AccountView(
        program_id=program.id, contact_id=contact_id, balance=max(0, (balance or 0) - expired), held=int(held or 0),
        expiring_soon=policy.expiring_soon(buckets, today), expired=expired,
        buckets=[BucketView(m, r, policy.last_month(m)) for m, r in policy.spendable(buckets, today).items()],
    )


@dataclass(frozen=True)
class StatementLine:
    posting_id: int
    reference: str
    kind: str
    amount: int
    memo: str | None
    created_at: datetime


@dataclass(frozen=True)
class MonthSummary:
    month: Month
    credited: int
    debited: int


async def statement(session: AsyncSession, program_id: int, contact_id: int, *, before: int | None,
                    limit: int) -> tuple[list[StatementLine], list[MonthSummary]]:
    """Recent detail (the user's entries, newest first) and the rolled-up history before it, for the contact
    `contact_id` is about now (a merged-away id reads its survivor's statement); 404 for an unknown contact."""
    await get_program(session, program_id)
    contact_id = await follow(session, contact_id)
    known = await session.scalar(text(
        "SELECT EXISTS (SELECT 1 FROM contacts WHERE id = :c)"
        " OR EXISTS (SELECT 1 FROM ledger_accounts WHERE contact_id = :c AND program_id = :p)"),
        {"c": contact_id, "p": program_id})
    if not known:
        raise NotFound(f"contact {contact_id} does not exist")
    rows = await session.execute(text("""
        SELECT e.posting_id, p.reference, p.kind, e.amount, p.memo, e.created_at
        FROM ledger_entries e JOIN ledger_postings p ON p.id = e.posting_id
        WHERE e.contact_id = :c AND e.program_id = :p AND e.account = 'user'
          AND (CAST(:before AS bigint) IS NULL OR e.posting_id < :before)
        ORDER BY e.posting_id DESC LIMIT :limit
    """), {"c": contact_id, "p": program_id, "before": before, "limit": limit})
    lines = [StatementLine(r.posting_id, r.reference, r.kind, r.amount, r.memo, r.created_at) for r in rows]
    rolled = await session.execute(text("""
        SELECT month, credited, debited FROM ledger_rollups
        WHERE contact_id = :c AND program_id = :p AND account = 'user' ORDER BY month DESC
    """), {"c": contact_id, "p": program_id})
    return lines, [MonthSummary(r.month, r.credited, r.debited) for r in rolled]


async def system_balances(session: AsyncSession, program_id: int) -> dict[str, int]:
    rows = await session.execute(text("""
        SELECT account, sum(balance) AS balance FROM ledger_system_balances
        WHERE program_id = :p GROUP BY account ORDER BY account
    """), {"p": program_id})
    return {r.account: int(r.balance) for r in rows}

