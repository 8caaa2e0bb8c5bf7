"""Expiry rules against real Postgres, on both ways in (a caller's transaction, and the batching writer whose credit
batches run in autocommit through the credit function): no credit into a future or already expired month, no spend
of points past their expiry and no balance showing them, whether or not the sweep has run yet."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import InsufficientPoints, Kind, MonthNotOpen, Request, parse_month
from store.db import transaction
from store.ledger import accounts, programs
from store.ledger.receipts import Receipt
from store.ledger.writer import PostingWriter

JAN, FEB, MAR, APR = (parse_month(f"2026-{m:02d}") for m in range(1, 5))
Poster = Callable[[async_sessionmaker[AsyncSession], int, Request, datetime], Awaitable[Receipt]]


async def make_program(sessions: async_sessionmaker[AsyncSession], expiry: int | None) -> int:
    async with transaction(sessions) as s:
        return (await programs.create_program(s, name=f"exp-{uuid.uuid4().hex[:8]}", unit="points",
                                              expiry_months=expiry, retention_months=6)).id


async def make_contact(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with transaction(sessions) as s:
        return int(await s.scalar(text("INSERT INTO contacts (user_id) VALUES ('expiry-' || gen_random_uuid()) "
                                       "RETURNING id")))


async def books(sessions: async_sessionmaker[AsyncSession], program: int, contact: int) -> int:
    """The account's balance row, which must equal its entries and its buckets (expired ones included until the
    sweep moves them)."""
    async with sessions() as s:
        row = (await s.execute(text("""
            SELECT a.balance,
                   (SELECT coalesce(sum(amount), 0) FROM ledger_entries
                     WHERE contact_id = :c AND program_id = :p AND account = 'user') AS entries,
                   (SELECT coalesce(sum(remaining), 0) FROM ledger_buckets WHERE contact_id = :c AND program_id = :p)
                     AS buckets
            FROM contacts LEFT JOIN ledger_accounts a ON a.contact_id = contacts.id AND a.program_id = :p
            WHERE contacts.id = :c
        """), {"c": contact, "p": program})).one()
    assert (row.balance or 0) == row.entries == row.buckets
    return int(row.entries)


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


async def post(sessions: async_sessionmaker[AsyncSession], program: int, request: Request, now: datetime) -> Receipt:
    async with transaction(sessions) as s:
        return await accounts.post(s, program, request, now=now)


async def written(sessions: async_sessionmaker[AsyncSession], program: int, request: Request,
                  now: datetime) -> Receipt:
    """Through the batching writer: credits take the one-call credit function in autocommit."""
    async with PostingWriter(sessions, writers=1, clock=lambda: now) as writer:
        return await writer.post(program, request)


async def view(sessions: async_sessionmaker[AsyncSession], program: int, contact: int,
               now: datetime) -> accounts.AccountView:
    async with sessions() as s:
        return await accounts.account(s, await programs.get_program(s, program), contact, now=now)


@pytest.mark.parametrize("path", [post, written])
async def test_a_credit_back_dated_into_a_month_already_expired_is_refused(
        sessions: async_sessionmaker[AsyncSession], path: Poster) -> None:
    program, contact = await make_program(sessions, expiry=1), await make_contact(sessions)
    # January's points were spendable through February: on 10 March that month is closed.
    with pytest.raises(MonthNotOpen, match="2026-01 expired at the end of 2026-02"):
        await path(sessions, program, Request("late", Kind.CREDIT, contact, 40, earned_month=JAN),
                   at("2026-03-10"))
    # February is still spendable in March, so it is open.
    ok = await path(sessions, program, Request("import", Kind.CREDIT, contact, 15, earned_month=FEB),
                    at("2026-03-10"))
    assert (ok.amount, ok.balance_after) == (15, 15)
    assert await books(sessions, program, contact) == 15
    assert [b.month for b in (await view(sessions, program, contact, at("2026-03-10"))).buckets] == [FEB]


@pytest.mark.parametrize("path", [post, written])
async def test_a_credit_into_a_month_that_has_not_started_is_refused(
        sessions: async_sessionmaker[AsyncSession], path: Poster) -> None:
    program, contact = await make_program(sessions, expiry=12), await make_contact(sessions)
    for month in (APR, parse_month("2030-01")):
        with pytest.raises(MonthNotOpen, match="has not started"):
            await path(sessions, program, Request(f"future-{month}", Kind.CREDIT, contact, 9,
                                                  earned_month=month), at("2026-03-31T23:59:00"))
    assert await books(sessions, program, contact) == 0


@pytest.mark.parametrize("path", [post, written])
async def test_a_credit_posted_while_its_month_was_open_still_replays_after_it_closed(
        sessions: async_sessionmaker[AsyncSession], path: Poster) -> None:
    program, contact = await make_program(sessions, expiry=1), await make_contact(sessions)
    request = Request("import-feb", Kind.CREDIT, contact, 20, earned_month=FEB)
    first = await path(sessions, program, request, at("2026-03-02"))
    again = await path(sessions, program, request, at("2026-04-02"))
    assert again.replayed and (again.id, again.amount) == (first.id, 20)


async def test_a_spend_never_takes_points_past_their_expiry_before_the_sweep_runs(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, contact = await make_program(sessions, expiry=1), await make_contact(sessions)
    await post(sessions, program, Request("jan", Kind.CREDIT, contact, 40), at("2026-01-10"))
    await post(sessions, program, Request("mar", Kind.CREDIT, contact, 10), at("2026-03-02"))
    # 3 March: January's 40 expired at the end of February; the daily sweep has not moved them yet.
    march = at("2026-03-03")
    shown = await view(sessions, program, contact, march)
    assert (shown.balance, shown.expired, [(b.month, b.remaining) for b in shown.buckets]) == (10, 40, [(MAR, 10)])
    for kind in (Kind.DEBIT, Kind.HOLD):
        with pytest.raises(InsufficientPoints, match="has 10 spendable"):
            await post(sessions, program, Request(f"too-much-{kind}", kind, contact, 11), march)
    with pytest.raises(InsufficientPoints):
        await post(sessions, program, Request("adjust-down", Kind.ADJUST, contact, -11), march)
    spent = await post(sessions, program, Request("spend", Kind.DEBIT, contact, 10), march)
    assert spent.amount == 10
    shown = await view(sessions, program, contact, march)
    assert (shown.balance, shown.expired, shown.buckets) == (0, 40, [])
    assert await books(sessions, program, contact) == 40  # the books still hold them until the sweep


async def test_a_hold_voided_after_its_points_expired_gives_back_only_what_is_spendable(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, contact = await make_program(sessions, expiry=1), await make_contact(sessions)
    await post(sessions, program, Request("jan", Kind.CREDIT, contact, 30), at("2026-01-20"))
    await post(sessions, program, Request("feb", Kind.CREDIT, contact, 20), at("2026-02-10"))
    await post(sessions, program, Request("hold", Kind.HOLD, contact, 40, hold_seconds=30 * 86400), at("2026-02-27"))
    voided = await post(sessions, program, Request("void", Kind.VOID, contact, hold_reference="hold"),
                        at("2026-03-02"))
    assert voided.entries == (("holds", -40), ("user", 10), ("expiry", 30))
    assert (voided.amount, voided.balance_after) == (40, 20)
    shown = await view(sessions, program, contact, at("2026-03-02"))
    assert (shown.balance, shown.expired, [(b.month, b.remaining) for b in shown.buckets]) == (20, 0, [(FEB, 20)])
    async with sessions() as s:
        assert (await accounts.system_balances(s, program))["expiry"] == 30
    assert await books(sessions, program, contact) == 20
