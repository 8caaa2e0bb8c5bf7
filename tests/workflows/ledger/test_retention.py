"""RetentionWorkflow with a controlled "now": detail past the retention window goes to Parquet (one file per
program and month, read back complete with DuckDB), is rolled up and deleted; balances, reconciliation and
the statement still agree."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from core.settings import Settings
from domain.ledger.postings import Kind, Request, parse_month
from store.db import transaction
from store.ledger import reconcile
from store.ledger.accounts import account, post, statement
from store.ledger.programs import create_program, get_program
from workflows.ledger.operations import TASK_QUEUE, RetentionInput, RetentionWorkflow


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


async def _retain(client: Client, program: int, now: datetime) -> list[str]:
    totals = await client.execute_workflow(RetentionWorkflow.run, RetentionInput(now=now, programs=[program]),
                                           id=f"ledger-retention-test-{uuid.uuid4().hex[:8]}", task_queue=TASK_QUEUE)
    return totals.files


async def test_old_detail_is_archived_verified_rolled_up_and_served_as_history(
        sessions: async_sessionmaker[AsyncSession], temporal_client: Client, worker: None, settings: Settings) -> None:
    async with transaction(sessions) as s:
        program = (await create_program(s, name=f"ret-{uuid.uuid4().hex[:8]}", unit="points",
                                     expiry_months=None, retention_months=2)).id
        a, b = sorted(r.id for r in await s.execute(text(
            "INSERT INTO contacts (user_id) SELECT 'retention-' || gen_random_uuid() FROM generate_series(1, 2) "
            "RETURNING id")))
    history = [("2025-01-05", Request("a1", Kind.CREDIT, a, 100)), ("2025-01-20", Request("a2", Kind.DEBIT, a, 30)),
               ("2025-01-21", Request("b1", Kind.CREDIT, b, 40)), ("2025-02-10", Request("a3", Kind.CREDIT, a, 5)),
               ("2025-04-02", Request("a4", Kind.CREDIT, a, 7)), ("2025-04-03", Request("a5", Kind.DEBIT, a, 50))]
    for day, request in history:
        async with transaction(sessions) as s:
            await post(s, program, request, now=at(day))

    # In April, two months of retention keep February onwards in detail; January is archived.
    files = await _retain(temporal_client, program, at("2025-04-15"))
    root = settings.home / "archive" / "ledger" / f"program={program}"
    assert files == [str(root / "2025-01.parquet")]
    jan = duckdb.sql(f"SELECT contact_id, reference, kind, amount FROM '{root / '2025-01.parquet'}' "
                     "ORDER BY posting_id").fetchall()
    assert jan == [(a, "a1", "credit", 100), (a, "a2", "debit", -30), (b, "b1", "credit", 40)]

    files = await _retain(temporal_client, program, at("2025-05-01"))  # February is now past the window too
    assert files == [str(root / "2025-02.parquet")]
    assert await _retain(temporal_client, program, at("2025-05-02")) == []  # a month is archived once
    (total,) = duckdb.sql(f"SELECT count(*), sum(amount) FROM '{root}/*.parquet'").fetchall()
    assert total == (4, 115)

    async with sessions() as s:
        left = await s.scalar(text("SELECT count(*) FROM ledger_entries WHERE program_id = :p"), {"p": program})
        assert left == 2  # April's detail is kept
        lines, months = await statement(s, program, a, before=None, limit=50)
        assert [(x.reference, x.amount) for x in lines] == [("a5", -50), ("a4", 7)]
        assert [(m.month, m.credited, m.debited) for m in months] == [
            (parse_month("2025-02"), 5, 0), (parse_month("2025-01"), 100, 30)]
        view = await account(s, await get_program(s, program), a, now=at("2025-05-02"))
        assert view.balance == 100 - 30 + 5 + 7 - 50
    async with transaction(sessions) as s:
        accounts = await reconcile.check_accounts(s, after=min(a, b) - 1, limit=2, programs=[program],
                                                  today=parse_month("2025-05"))
        postings = await reconcile.check_postings(s, after=0, limit=1_000_000, programs=[program])
    assert (accounts.checked, accounts.found, postings.found) == (2, 0, 0)


def test_archive_files_sit_one_per_program_and_month(tmp_path: Path) -> None:
    from store.ledger.archive import archive_path

    assert archive_path(tmp_path, 7, parse_month("2025-03")) == tmp_path / "ledger" / "program=7" / "2025-03.parquet"
