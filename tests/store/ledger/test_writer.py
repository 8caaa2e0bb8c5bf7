"""The posting writer on real Postgres: a submission holding a value the database refuses fails alone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.errors import DomainError
from domain.ledger.postings import Kind, Request
from store.db import transaction
from store.ledger import accounts, programs
from store.ledger.receipts import Receipt, Submission
from store.ledger.writer import PostingWriter

NOW = datetime(2025, 6, 15, tzinfo=UTC)
TOO_BIG = 2 ** 63  # no bigint holds it: Postgres refuses the batch's array


async def test_a_refused_submission_fails_alone_and_its_batch_neighbours_post_once(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    """One batch of credits and debits, three of them poisoned: a contact id Postgres cannot hold (in the credit
    call and in the debits' read), and a memo with NUL the driver refuses. Each poisoned submission gets its own
    422 naming its reference; every other one posts exactly once and the balances add up."""
    tag = uuid.uuid4().hex[:8]
    async with transaction(sessions) as s:
        program = (await programs.create_program(s, name=f"w-{tag}", unit="points", expiry_months=12,
                                                 retention_months=6)).id
        rows = await s.execute(text("INSERT INTO contacts (user_id) SELECT :t || '-' || n "
                                    "FROM generate_series(1, 4) n RETURNING id"), {"t": f"writer-{tag}"})
        contacts = sorted(r.id for r in rows)
        for c in contacts:
            await accounts.post(s, program, Request(f"{tag}:seed:{c}", Kind.CREDIT, c, 100), now=NOW)

    def credit(n: int, contact: int, memo: str | None = None) -> Request:
        return Request(f"{tag}:credit:{n}", Kind.CREDIT, contact, 10 + n, memo=memo)

    def debit(n: int, contact: int) -> Request:
        return Request(f"{tag}:debit:{n}", Kind.DEBIT, contact, 5)

    requests = [credit(n, contacts[n % 4]) for n in range(20)]
    requests[4] = credit(4, TOO_BIG)
    requests[13] = credit(13, contacts[1], memo="nul \x00 memo")
    debits = [debit(n, contacts[n % 4]) for n in range(8)]
    debits[5] = debit(5, TOO_BIG)
    bad = {requests[4].reference, requests[13].reference, debits[5].reference}

    async with PostingWriter(sessions, writers=1) as writer:
        outcomes = await writer.post_many([Submission(program, r) for r in [*requests, *debits]])

    for request, outcome in zip([*requests, *debits], outcomes, strict=True):
        if request.reference in bad:
            assert isinstance(outcome, DomainError) and outcome.status == 422, outcome
            assert f"posting {request.reference!r} holds a value the database refuses" in str(outcome)
        else:
            assert isinstance(outcome, Receipt) and not outcome.replayed, (request, outcome)
    async with sessions() as s:
        posted = dict((await s.execute(text(
            "SELECT reference, count(*) FROM ledger_postings WHERE program_id = :p GROUP BY 1"),
            {"p": program})).all())
        balances = dict((await s.execute(text(
            "SELECT contact_id, balance FROM ledger_accounts WHERE program_id = :p"), {"p": program})).all())
    good = [r for r in [*requests, *debits] if r.reference not in bad]
    assert posted == {**{f"{tag}:seed:{c}": 1 for c in contacts}, **{r.reference: 1 for r in good}}
    assert balances == {c: 100 + sum(r.amount if r.kind is Kind.CREDIT else -r.amount
                                     for r in good if r.contact_id == c) for c in contacts}
