"""Postings against real Postgres: exactly once per reference, buckets, holds, parallel writers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import NotFound
from domain.ledger.postings import HoldNotPending, InsufficientPoints, Kind, ReferenceConflict, Request, parse_month
from store.db import transaction
from store.ledger import accounts, programs
from store.ledger.receipts import Receipt, Submission
from store.ledger.writer import PostingWriter

NOW = datetime(2025, 6, 15, tzinfo=UTC)


async def make_program(sessions: async_sessionmaker[AsyncSession], expiry: int | None = 12) -> int:
    async with transaction(sessions) as s:
        program = await programs.create_program(s, name=f"p-{uuid.uuid4().hex[:8]}", unit="points",
                                             expiry_months=expiry, retention_months=6)
        return program.id


async def make_contacts(sessions: async_sessionmaker[AsyncSession], n: int) -> list[int]:
    async with transaction(sessions) as s:
        rows = await s.execute(text("INSERT INTO contacts (user_id) SELECT 'ledger-' || gen_random_uuid() "
                                    "FROM generate_series(1, :n) RETURNING id"), {"n": n})
        return sorted(r.id for r in rows)


async def post(sessions: async_sessionmaker[AsyncSession], program: int, request: Request) -> Receipt:
    async with transaction(sessions) as s:
        return await accounts.post(s, program, request, now=NOW)


async def invariants(sessions: async_sessionmaker[AsyncSession], program: int, contact: int) -> int:
    """balance = sum of entries = sum of buckets, and every posting of the program balances and agrees with its
    entry rows."""
    async with sessions() as s:
        row = (await s.execute(text("""
            SELECT a.balance,
                   (SELECT coalesce(sum(amount), 0) FROM ledger_entries
                     WHERE contact_id = :c AND program_id = :p AND account = 'user') AS entries,
                   (SELECT coalesce(sum(remaining), 0) FROM ledger_buckets
                     WHERE contact_id = :c AND program_id = :p) AS buckets
            FROM ledger_accounts a WHERE a.contact_id = :c AND a.program_id = :p
        """), {"c": contact, "p": program})).one()
        # A posting's receipt lists both sides; the user side is also an entry row.
        unbalanced = await s.scalar(text("""
            SELECT count(*) FROM ledger_postings p
            WHERE p.program_id = :p AND (
                (SELECT coalesce(sum((x->>1)::bigint), 0) FROM jsonb_array_elements(p.entries) x) <> 0
                OR (SELECT coalesce(sum((x->>1)::bigint), 0) FROM jsonb_array_elements(p.entries) x
                    WHERE x->>0 = 'user')
                   <> (SELECT coalesce(sum(amount), 0) FROM ledger_entries e
                       WHERE e.contact_id = p.contact_id AND e.posting_id = p.id))
        """), {"p": program})
    assert row.balance == row.entries == row.buckets
    assert unbalanced == 0
    return int(row.balance)


async def test_replaying_a_reference_returns_the_original_receipt(sessions: async_sessionmaker[AsyncSession]) -> None:
    program, (contact,) = await make_program(sessions), await make_contacts(sessions, 1)
    first = await post(sessions, program, Request(f"reward:t1:{contact}:2025-06:1", Kind.CREDIT, contact, 50))
    again = await post(sessions, program, Request(f"reward:t1:{contact}:2025-06:1", Kind.CREDIT, contact, 50))
    assert again.replayed and not first.replayed
    assert (again.id, again.balance_after, again.entries, again.created_at) == (
        first.id, 50, (("issuance", -50), ("user", 50)), first.created_at)
    assert await invariants(sessions, program, contact) == 50


async def test_the_same_reference_with_other_content_is_a_conflict(sessions: async_sessionmaker[AsyncSession]) -> None:
    program, (a, b) = await make_program(sessions), await make_contacts(sessions, 2)
    await post(sessions, program, Request("grant-1", Kind.CREDIT, a, 10))
    with pytest.raises(ReferenceConflict):
        await post(sessions, program, Request("grant-1", Kind.CREDIT, a, 11))
    with pytest.raises(ReferenceConflict):
        await post(sessions, program, Request("grant-1", Kind.CREDIT, b, 10))
    assert await invariants(sessions, program, a) == 10


async def test_spends_take_the_oldest_month_first_and_never_go_negative(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, (contact,) = await make_program(sessions), await make_contacts(sessions, 1)
    for n, month in enumerate(("2025-03", "2025-01", "2025-02")):
        await post(sessions, program, Request(f"c{n}", Kind.CREDIT, contact, 10, earned_month=parse_month(month)))
    await post(sessions, program, Request("d1", Kind.DEBIT, contact, 15))
    with pytest.raises(InsufficientPoints):
        await post(sessions, program, Request("d2", Kind.DEBIT, contact, 16))
    async with sessions() as s:
        view = await accounts.account(s, await programs.get_program(s, program), contact, now=NOW)
    assert [(b.month, b.remaining) for b in view.buckets] == [(parse_month("2025-02"), 5), (parse_month("2025-03"), 10)]
    assert await invariants(sessions, program, contact) == 15


async def test_a_voided_hold_restores_its_buckets_and_a_settled_hold_cannot_settle_again(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, (contact,) = await make_program(sessions), await make_contacts(sessions, 1)
    await post(sessions, program, Request("c1", Kind.CREDIT, contact, 30, earned_month=parse_month("2025-01")))
    await post(sessions, program, Request("h1", Kind.HOLD, contact, 20, hold_seconds=60))
    async with sessions() as s:
        held = await accounts.account(s, await programs.get_program(s, program), contact, now=NOW)
    assert (held.balance, held.held) == (10, 20)
    await post(sessions, program, Request("v1", Kind.VOID, contact, hold_reference="h1"))
    with pytest.raises(HoldNotPending):
        await post(sessions, program, Request("k1", Kind.COMMIT, contact, hold_reference="h1"))
    assert await invariants(sessions, program, contact) == 30


async def test_postings_for_unknown_contacts_are_refused(sessions: async_sessionmaker[AsyncSession]) -> None:
    program = await make_program(sessions)
    with pytest.raises(NotFound):
        await post(sessions, program, Request("nobody", Kind.CREDIT, 2**62, 5))


async def test_parallel_postings_to_one_account_lose_no_update_and_never_go_negative(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, (contact,) = await make_program(sessions), await make_contacts(sessions, 1)
    await post(sessions, program, Request("seed", Kind.CREDIT, contact, 100))

    async def one(n: int) -> object:
        request = Request(f"par-{n}", Kind.CREDIT if n % 2 else Kind.DEBIT, contact, 7)
        try:
            return await post(sessions, program, request)
        except InsufficientPoints as exc:
            return exc

    direct = await asyncio.gather(*(one(n) for n in range(40)))
    async with PostingWriter(sessions, writers=3, max_batch=8, clock=lambda: NOW) as writer:
        batched = await writer.post_many([Submission(program, Request(f"par-{n}", Kind.CREDIT if n % 2 else Kind.DEBIT,
                                                                     contact, 7)) for n in range(40, 200)])
        replays = await writer.post_many([Submission(program, Request(f"par-{n}", Kind.CREDIT if n % 2 else Kind.DEBIT,
                                                                     contact, 7)) for n in range(40, 200)])
    outcomes = [*direct, *batched]
    credited = sum(7 for o in outcomes if isinstance(o, Receipt) and o.kind == "credit")
    debited = sum(7 for o in outcomes if isinstance(o, Receipt) and o.kind == "debit")
    assert all(isinstance(o, Receipt | InsufficientPoints) for o in outcomes)
    assert all(isinstance(r, type(o)) for r, o in zip(replays, batched, strict=True))
    assert await invariants(sessions, program, contact) == 100 + credited - debited


async def test_references_and_memos_with_quotes_commas_and_backslashes_post_once_and_replay(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    program, contacts = await make_program(sessions), await make_contacts(sessions, 4)
    odd = ['say "hi", {twice}', "back\\slash\\", "NULL", " spaced , out "]
    requests = [Request(f"{ref}:{c}", Kind.CREDIT, c, 3, memo=ref) for ref, c in zip(odd, contacts, strict=True)]
    async with PostingWriter(sessions, writers=1) as writer:
        first = await writer.post_many([Submission(program, r) for r in requests])
        again = await writer.post_many([Submission(program, r) for r in requests])
    assert [(r.reference, r.memo, r.replayed) for r in first if isinstance(r, Receipt)] == [
        (r.reference, r.memo, False) for r in requests]
    assert [(a.id, a.reference, a.memo, a.replayed) for a in again if isinstance(a, Receipt)] == [
        (f.id, f.reference, f.memo, True) for f in first if isinstance(f, Receipt)]
    for contact in contacts:
        assert await invariants(sessions, program, contact) == 3


async def test_the_credit_function_refuses_an_unknown_program_and_a_posted_program_cannot_be_deleted(
        sessions: async_sessionmaker[AsyncSession], database_url: str) -> None:
    """Postings carry no per-row foreign key to their program (migration 0010): the credit function checks the
    program once per call, and the programs side refuses to delete a program that has postings."""
    import psycopg

    from store.ledger.credits import CALL, _ints, _texts

    program = await make_program(sessions)
    contact = (await make_contacts(sessions, 1))[0]
    await post(sessions, program, Request("guard:1", Kind.CREDIT, contact, 5))
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
            conn.execute(CALL, (_ints([program + 10_000]), _texts(["guard:2"]), _ints([contact]), _ints([5]),
                                _ints([24_000]), _texts(["fp"]), _texts([None]), NOW, 0))
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="has postings"):
            conn.execute("DELETE FROM ledger_programs WHERE id = %s", (program,))
        assert conn.execute("SELECT count(*) FROM ledger_postings WHERE program_id = %s AND reference = 'guard:2'",
                            (program,)).fetchone() == (0,)
        unused = conn.execute("INSERT INTO ledger_programs (name) VALUES (%s) RETURNING id",
                              (f"unused-{uuid.uuid4().hex[:6]}",)).fetchone()
        assert unused is not None
        conn.execute("DELETE FROM ledger_programs WHERE id = %s", unused)  # nothing posted: deletable
