"""ExpiryWorkflow with a controlled "now": due buckets move to the expiry account once per bucket month, under
`expire:{program}:{contact}:earned:{month}`, and nothing that is still spendable expires. References of the older
per-run shape (`expire:{program}:{contact}:{run month}`), which deployments already hold, neither block a later
expiry nor make one happen twice."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Replayer

from domain.ledger.postings import Kind, Request, parse_month
from store.db import transaction
from store.ledger import accounts, programs
from store.ledger.credits import post_credits
from store.ledger.receipts import Submission
from workflows.ledger.operations import TASK_QUEUE, ExpiryInput, ExpiryTotals, ExpiryWorkflow


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


async def _post(sessions: async_sessionmaker[AsyncSession], program: int, request: Request, now: datetime) -> None:
    async with transaction(sessions) as s:
        await accounts.post(s, program, request, now=now)


async def _expire(client: Client, program: int, now: datetime) -> ExpiryTotals:
    handle = await client.start_workflow(ExpiryWorkflow.run, ExpiryInput(now=now, programs=[program], page_size=1),
                                         id=f"ledger-expiry-test-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE)
    totals = await handle.result()
    await Replayer(workflows=[ExpiryWorkflow]).replay_workflow(await handle.fetch_history())
    return totals


async def _buckets(sessions: async_sessionmaker[AsyncSession], program: int, contact: int) -> dict[str, int]:
    async with sessions() as s:
        view = await accounts.account(s, await programs.get_program(s, program), contact, now=at("2026-03-01"))
        assert view.balance == sum(b.remaining for b in view.buckets)
        return {f"{b.month // 12}-{b.month % 12 + 1:02d}": b.remaining for b in view.buckets}


async def test_due_buckets_expire_once_per_month_and_spendable_points_stay(
        sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None) -> None:
    async with transaction(sessions) as s:
        program = (await programs.create_program(s, name=f"exp-{uuid.uuid4().hex[:8]}", unit="points",
                                              expiry_months=1, retention_months=6)).id
        a, b = sorted(r.id for r in await s.execute(text(
            "INSERT INTO contacts (user_id) SELECT 'expiry-' || gen_random_uuid() FROM generate_series(1, 2) "
            "RETURNING id")))
    await _post(sessions, program, Request("a-jan", Kind.CREDIT, a, 40), at("2026-01-10"))
    await _post(sessions, program, Request("a-feb", Kind.CREDIT, a, 25), at("2026-02-10"))
    await _post(sessions, program, Request("a-spend", Kind.DEBIT, a, 10), at("2026-02-15"))  # takes January's first
    await _post(sessions, program, Request("b-feb", Kind.CREDIT, b, 50), at("2026-02-20"))

    # March: January's points were spendable through February, so they are due; February's are not.
    march = await _expire(temporal_client, program, at("2026-03-05T08:00:00"))
    assert (march.contacts, march.postings, march.points) == (1, 1, 30)
    assert await _buckets(sessions, program, a) == {"2026-02": 25}
    assert await _buckets(sessions, program, b) == {"2026-02": 50}
    async with sessions() as s:
        receipt = await accounts.receipt(s, program, f"expire:{program}:{a}:earned:2026-01")
        assert (receipt.kind, receipt.amount, receipt.balance_after) == ("expire", 30, 25)
        assert receipt.created_at == at("2026-03-05T08:00:00")

    again = await _expire(temporal_client, program, at("2026-03-28"))
    assert (again.postings, again.points) == (0, 0)

    april = await _expire(temporal_client, program, at("2026-04-01"))
    assert (april.contacts, april.postings, april.points) == (2, 2, 75)
    assert await _buckets(sessions, program, a) == await _buckets(sessions, program, b) == {}
    async with sessions() as s:
        assert (await accounts.system_balances(s, program))["expiry"] == 105
        view = await accounts.account(s, await programs.get_program(s, program), a, now=at("2026-04-01"))
    assert (view.balance, view.expiring_soon) == (0, 0)


async def test_a_program_without_expiry_expires_nothing(sessions: async_sessionmaker[AsyncSession],
                                                        temporal_client: Client, worker: None) -> None:
    async with transaction(sessions) as s:
        program = (await programs.create_program(s, name=f"noexp-{uuid.uuid4().hex[:8]}", unit="points",
                                              expiry_months=None, retention_months=6)).id
        (contact,) = [r.id for r in await s.execute(text(
            "INSERT INTO contacts (user_id) VALUES ('expiry-' || gen_random_uuid()) RETURNING id"))]
    await _post(sessions, program, Request("old", Kind.CREDIT, contact, 9, earned_month=parse_month("2000-01")),
                at("2026-01-01"))
    totals = await _expire(temporal_client, program, at("2030-01-01"))
    assert (totals.programs, totals.postings) == (0, 0)


async def test_points_that_reached_an_expired_month_after_its_run_are_expired_by_the_next_run(
        sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None, database_url: str) -> None:
    """Before per-bucket references, the March run's reference `expire:{p}:{c}:2026-03` blocked every later expiry of
    that contact in March, so points credited into January after it stayed spendable. Deployments hold such rows."""
    async with transaction(sessions) as s:
        program = (await programs.create_program(s, name=f"late-{uuid.uuid4().hex[:8]}", unit="points",
                                                 expiry_months=1, retention_months=6)).id
        contact = int(await s.scalar(text(
            "INSERT INTO contacts (user_id) VALUES ('expiry-' || gen_random_uuid()) RETURNING id")))
    await _post(sessions, program, Request("jan", Kind.CREDIT, contact, 40), at("2026-01-10"))
    # What the old March run posted: one expiry per contact and run month.
    await _post(sessions, program, Request(f"expire:{program}:{contact}:2026-03", Kind.EXPIRE, contact,
                                           months=(parse_month("2026-01"),)), at("2026-03-01T02:00:00"))
    # What the old credit path then accepted: 25 points back-dated into January (the credit function as it was
    # called before the planner's rules; the API now refuses this).
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        (late,) = await post_credits(conn, [Submission(program, Request(
            "late-jan", Kind.CREDIT, contact, 25, earned_month=parse_month("2026-01")))],
            now=at("2026-03-10"), shard=0)
    assert not isinstance(late, Exception)
    await _post(sessions, program, Request("mar", Kind.CREDIT, contact, 15), at("2026-03-12"))

    march = await _expire(temporal_client, program, at("2026-03-20"))
    assert (march.postings, march.points, march.refused) == (1, 25, 0)  # the late points; January's 40 not again
    again = await _expire(temporal_client, program, at("2026-03-28"))
    assert (again.postings, again.points, again.refused) == (0, 0, 0)
    # March's own bucket comes due in May; the old run reference `...:2026-03` must not stand in for it.
    may = await _expire(temporal_client, program, at("2026-05-01"))
    assert (may.postings, may.points, may.refused) == (1, 15, 0)
    async with sessions() as s:
        assert (await accounts.system_balances(s, program))["expiry"] == 40 + 25 + 15
        for month, amount in (("2026-01", 25), ("2026-03", 15)):
            receipt = await accounts.receipt(s, program, f"expire:{program}:{contact}:earned:{month}")
            assert (receipt.kind, receipt.amount) == ("expire", amount)
        view = await accounts.account(s, await programs.get_program(s, program), contact, now=at("2026-05-01"))
    assert (view.balance, view.expired, view.buckets) == (0, 0, [])
