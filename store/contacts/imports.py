"""`nudge import contacts FILE`: stream a CSV of contacts into Postgres with COPY, then merge it set-based.

Columns `user_id`, `email`, `phone` and `timezone` fill the contact; every other column becomes a trait
(as text). A row matches an existing contact by user_id, else email, else phone (through identities);
the last row wins when a file names the same person twice. Everything happens in one transaction: an
import that fails leaves nothing behind. Memory stays flat: the file is sent in 1 MB chunks.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from domain.errors import DomainError
from store.db import plain_url

COLUMNS = ("user_id", "email", "phone", "timezone")
KEYS = ("user_id", "email", "phone")
CHUNK = 1 << 20

Progress = Callable[[str, int, int], None]  # (stage, done, total)


class BadImport(DomainError):
    status = 400
    title = "Invalid import file"


@dataclass(frozen=True)
class ImportResult:
    rows: int
    created: int
    updated: int
    seconds: float


MERGE = (
    # One row per person, the file's last line winning; traits are every non-contact column.
    """CREATE TEMP TABLE contact_rows ON COMMIT DROP AS
       SELECT DISTINCT ON (key) key, user_id, email, phone,
              CASE WHEN timezone IN (SELECT name FROM pg_timezone_names) THEN timezone END AS timezone,
              jsonb_strip_nulls(to_jsonb(s) - ARRAY['user_id', 'email', 'phone', 'timezone', '_line', 'key']) AS traits,
              NULL::bigint AS contact_id, false AS created
       FROM (SELECT *, coalesce('u:' || user_id, 'e:' || email, 'p:' || phone) AS key FROM contact_import) s
       WHERE key IS NOT NULL
       ORDER BY key, _line DESC""",
    "ANALYZE contact_rows",  # temp tables get no autovacuum statistics; without them the joins go quadratic
    """UPDATE contact_rows r SET contact_id = i.contact_id FROM identities i
       WHERE i.kind = 'user_id' AND i.value = r.user_id""",
    """UPDATE contact_rows r SET contact_id = i.contact_id FROM identities i
       WHERE r.contact_id IS NULL AND i.kind = 'email' AND i.value = r.email""",
    """UPDATE contact_rows r SET contact_id = i.contact_id FROM identities i
       WHERE r.contact_id IS NULL AND i.kind = 'phone' AND i.value = r.phone""",
    """UPDATE contacts c SET email = coalesce(r.email, c.email), phone = coalesce(r.phone, c.phone),
              timezone = coalesce(r.timezone, c.timezone), user_id = coalesce(c.user_id, r.user_id),
              traits = c.traits || r.traits, updated_at = now()
       FROM (SELECT DISTINCT ON (contact_id) * FROM contact_rows WHERE contact_id IS NOT NULL
             ORDER BY contact_id, key) r
       WHERE c.id = r.contact_id""",
    """UPDATE contact_rows SET contact_id = nextval(pg_get_serial_sequence('contacts', 'id')), created = true
       WHERE contact_id IS NULL""",
    """INSERT INTO contacts (id, user_id, email, phone, timezone, traits) OVERRIDING SYSTEM VALUE
       SELECT contact_id, user_id, email, phone, timezone, traits FROM contact_rows WHERE created
       ORDER BY contact_id
       ON CONFLICT (user_id) DO NOTHING""",
    """INSERT INTO identities (kind, value, contact_id)
       SELECT k.kind, k.value, r.contact_id
       FROM contact_rows r JOIN contacts c ON c.id = r.contact_id
       CROSS JOIN LATERAL (VALUES ('user_id', r.user_id), ('email', r.email), ('phone', r.phone)) AS k(kind, value)
       WHERE k.value IS NOT NULL
       ORDER BY 1, 2  -- in index order: each btree page is touched once, not once per row
       ON CONFLICT DO NOTHING""",
)


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise BadImport(f"{path} is empty; the first line must name the columns (user_id, email, phone, …).")
    names = [h.strip().lower() for h in header]
    if len(set(names)) != len(names):
        raise BadImport(f"{path} names a column twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}.")
    if not set(names) & set(KEYS):
        raise BadImport(f"{path} needs at least one of the columns {', '.join(KEYS)} to identify each contact.")
    if any(not n or n.startswith("_") for n in names):
        raise BadImport("Column names must be non-empty and must not start with `_`.")
    return names


def import_contacts(database_url: str, path: Path, *, progress: Progress | None = None) -> ImportResult:
    """Import a CSV of contacts (see the module doc). `progress(stage, done, total)` is called as bytes
    stream ("upload") and as the merge runs ("merge", step, steps)."""
    started = time.perf_counter()
    names = _header(path)
    total = path.stat().st_size
    report = progress or (lambda stage, done, of: None)
    with psycopg.connect(plain_url(database_url)) as conn, conn.transaction():
        columns = sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(n)) for n in names)
        conn.execute(sql.SQL("CREATE TEMP TABLE contact_import ({}, _line bigint GENERATED ALWAYS AS IDENTITY)"
                             " ON COMMIT DROP").format(columns))
        for column in set(COLUMNS) - set(names):
            conn.execute(sql.SQL("ALTER TABLE contact_import ADD COLUMN {} text").format(sql.Identifier(column)))
        copy_sql = sql.SQL("COPY contact_import ({}) FROM STDIN (FORMAT csv, HEADER true, ENCODING 'UTF8')").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names))
        done = 0
        try:
            with conn.cursor().copy(copy_sql) as copy, path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    copy.write(chunk)
                    done += len(chunk)
                    report("upload", done, total)
        except psycopg.errors.DataError as exc:
            raise BadImport(f"{path} is not a valid CSV for these columns: {exc}") from None
        conn.execute("UPDATE contact_import SET email = lower(trim(email)), user_id = nullif(trim(user_id), ''),"
                     " phone = nullif(trim(phone), '')")
        rows = conn.execute("SELECT count(*) FROM contact_import").fetchone()[0]  # type: ignore[index]
        for step, statement in enumerate(MERGE, 1):
            conn.execute(statement)
            report("merge", step, len(MERGE))
        created, updated = conn.execute(  # type: ignore[misc]
            "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE NOT created) FROM contact_rows").fetchone()
    return ImportResult(rows=rows, created=created, updated=updated, seconds=time.perf_counter() - started)
