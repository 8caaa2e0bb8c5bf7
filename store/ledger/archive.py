"""Detail retention: a program's entries older than its retention window are written to Parquet (one file per
program and month), read back and compared with the database, then rolled up into `ledger_rollups` and
deleted — in one transaction, so balance = entries + rollups holds in every snapshot.

Files live under `{home}/archive/ledger/program={id}/{YYYY-MM}.parquet` (hive-style, so DuckDB or polars
read a whole program with one glob). A month is archived once: `ledger_archives` is its manifest.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.ledger.postings import Month, month_label, month_of, month_start
from store.db import driver

SCHEMA = pa.schema([("contact_id", pa.int64()), ("posting_id", pa.int64()), ("account", pa.string()),
                    ("amount", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")),
                    ("reference", pa.string()), ("kind", pa.string()), ("memo", pa.string())])
CHUNK = 50_000


class ArchiveMismatch(Exception):
    """The file read back does not match the database: nothing was deleted."""


@dataclass
class Archived:
    program_id: int
    month: Month
    path: str
    rows: int
    total: int


def archive_path(root: Path, program_id: int, month: Month) -> Path:
    return root / "ledger" / f"program={program_id}" / f"{month_label(month)}.parquet"


def _bounds(month: Month) -> dict[str, datetime]:
    start = month_start(month)
    end = month_start(month + 1)
    return {"start": datetime(start.year, start.month, 1, tzinfo=UTC),
            "end": datetime(end.year, end.month, 1, tzinfo=UTC)}


async def months_due(session: AsyncSession, program_id: int, *, now: datetime) -> list[Month]:
    """Months of this program with detail older than its retention window and not yet archived."""
    retention = await session.scalar(text("SELECT retention_months FROM ledger_programs WHERE id = :p"),
                                     {"p": program_id})
    cutoff = month_of(now) - int(retention)
    oldest = await session.scalar(text("SELECT min(created_at) FROM ledger_entries WHERE program_id = :p"),
                                  {"p": program_id})
    if oldest is None:
        return []
    done = set(await session.scalars(text("SELECT month FROM ledger_archives WHERE program_id = :p"),
                                     {"p": program_id}))
    return [m for m in range(month_of(oldest.astimezone(UTC)), cutoff) if m not in done]


ENTRIES = """
    SELECT e.contact_id, e.posting_id, e.account, e.amount, e.created_at, p.reference, p.kind, p.memo
    FROM ledger_entries e JOIN ledger_postings p ON p.id = e.posting_id
    WHERE e.program_id = %(p)s AND e.created_at >= %(start)s AND e.created_at < %(end)s
    ORDER BY e.contact_id, e.posting_id
"""


async def archive_month(session: AsyncSession, program_id: int, month: Month, root: Path) -> Archived | None:
    """Write, verify, roll up and delete one month of one program's detail (None: already archived)."""
    if await session.scalar(text("SELECT 1 FROM ledger_archives WHERE program_id = :p AND month = :m"),
                            {"p": program_id, "m": month}):
        return None
    bounds = _bounds(month)
    # Lock the program's row so two runs cannot archive the same month at once.
    await session.execute(text("SELECT 1 FROM ledger_programs WHERE id = :p FOR UPDATE"), {"p": program_id})
    expected = (await session.execute(text("""
        SELECT count(*) AS n, coalesce(sum(amount), 0)::bigint AS total, coalesce(sum(posting_id), 0)::bigint AS ids
        FROM ledger_entries WHERE program_id = :p AND created_at >= :start AND created_at < :end
    """), {"p": program_id, **bounds})).one()
    path = archive_path(root, program_id, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".parquet.partial")
    conn = await driver(session)
    with pq.ParquetWriter(partial, SCHEMA, compression="zstd") as writer:
        async with conn.cursor(name=f"archive_{program_id}_{month}") as cur:
            await cur.execute(ENTRIES, {"p": program_id, **bounds})
            while rows := await cur.fetchmany(CHUNK):
                writer.write_table(pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows],
                                                        schema=SCHEMA))
    _verify(partial, expected)
    os.replace(partial, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    await session.execute(text("""
        INSERT INTO ledger_rollups AS r (contact_id, program_id, account, month, credited, debited)
        SELECT contact_id, program_id, account, :m, coalesce(sum(amount) FILTER (WHERE amount > 0), 0),
               coalesce(-sum(amount) FILTER (WHERE amount < 0), 0)
        FROM ledger_entries WHERE program_id = :p AND created_at >= :start AND created_at < :end
        GROUP BY contact_id, program_id, account
        ON CONFLICT (contact_id, program_id, account, month)
        DO UPDATE SET credited = r.credited + excluded.credited, debited = r.debited + excluded.debited
    """), {"p": program_id, "m": month, **bounds})
    deleted = (await session.execute(text("""
        DELETE FROM ledger_entries WHERE program_id = :p AND created_at >= :start AND created_at < :end
    """), {"p": program_id, **bounds})).rowcount
    if deleted != expected.n:
        raise ArchiveMismatch(f"deleted {deleted} entries but archived {expected.n}; rolled back")
    await session.execute(text("""
        INSERT INTO ledger_archives (program_id, month, path, rows, total, sha256) VALUES (:p, :m, :path, :n, :t, :h)
    """), {"p": program_id, "m": month, "path": str(path), "n": expected.n, "t": expected.total, "h": digest})
    return Archived(program_id, month, str(path), expected.n, expected.total)


def _verify(path: Path, expected: Any) -> None:
    """Read the file back: same rows, same points, same postings — or nothing is deleted."""
    table = pq.read_table(path)
    rows = table.num_rows
    total = pc.sum(table["amount"]).as_py() or 0
    ids = pc.sum(table["posting_id"]).as_py() or 0
    if (rows, total, ids) != (expected.n, expected.total, expected.ids):
        path.unlink(missing_ok=True)
        raise ArchiveMismatch(f"{path} holds {rows} rows / {total} points, "
                              f"the database {expected.n} / {expected.total}")
