"""Points programs, account views and statements; postings themselves are applied by store/ledger_postings.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, Identity, Integer, Text, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.ledger import postings as ledger
from domain.errors import Conflict, NotFound
from domain.ledger.postings import ExpiryPolicy, Month, Request
from store.base import Base, created_at
from store.ledger.postings import Outcome, Receipt, Submission, apply


class Program(Base):
    __tablename__ = "ledger_programs"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    unit: Mapped[str] = mapped_column(Text, default="points")
    expiry_months: Mapped[int | None] = mapped_column(Integer)
    retention_months: Mapped[int] = mapped_column(Integer, default=12)
    created_at: Mapped[datetime] = created_at()

    @property
    def policy(self) -> ExpiryPolicy:
        return ExpiryPolicy(self.expiry_months)


async def create_program(session: AsyncSession, *, name: str, unit: str, expiry_months: int | None,
                         retention_months: int) -> Program:
    program = Program(name=name, unit=unit, expiry_months=expiry_months, retention_months=retention_months)
    try:
        async with session.begin_nested():
            session.add(program)
            await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a program named {name!r} already exists") from exc
    return program


async def get_program(session: AsyncSession, program_id: int) -> Program:
    program = await session.get(Program, program_id)
    if program is None:
        raise NotFound(f"points program {program_id} does not exist")
    return program


async def list_programs(session: AsyncSession) -> Sequence[Program]:
    return (await session.scalars(select(Program).order_by(Program.id))).all()


async def post(session: AsyncSession, program_id: int, request: Request, *, now: datetime, shard: int = 0) -> Receipt:
    """One posting in the caller's transaction (the API path); raises what refused it."""
    await get_program(session, program_id)
    (outcome,) = await apply(session, [Submission(program_id, request)], now=now, shard=shard)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


async def receipt(session: AsyncSession, program_id: int, reference: str) -> Receipt:
    from store.ledger.postings import existing

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
    balance: int
    held: int
    expiring_soon: int
    buckets: list[BucketView]


async def account(session: AsyncSession, program: Program, contact_id: int, *, now: datetime) -> AccountView:
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
    policy = program.policy
    return AccountView(
        program_id=program.id, contact_id=contact_id, balance=balance or 0, held=int(held or 0),
        expiring_soon=policy.expiring_soon(buckets, ledger.month_of(now)),
        buckets=[BucketView(m, r, policy.last_month(m)) for m, r in buckets.items()],
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
    """Recent detail (the user's entries, newest first) and the rolled-up history before it."""
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


__all__ = ["AccountView", "Outcome", "Program", "Receipt", "Submission", "account", "apply", "create_program",
           "get_program", "list_programs", "post", "receipt", "statement", "system_balances"]
