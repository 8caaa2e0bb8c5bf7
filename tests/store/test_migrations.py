"""The migration scripts: one chain with a single head, named by their revision ids, and a schema that
upgrades, downgrades to nothing and upgrades again on an empty database."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import Script

from store.db import plain_url
from store.migrate import MIGRATIONS, current_heads, downgrade, script_directory, script_heads, upgrade

# The revision that joined the per-domain branches: everything after it is one line.
MERGE = "0012_merge_heads"
FILE_NAME = re.compile(r"\d{4}_[a-z0-9]+(_[a-z0-9]+)*\.py")

# One table from each of the old branches and from the foundation: the upgrade reached every head.
SOME_TABLES = {"contacts", "deliveries", "events", "segment_members", "ledger_postings", "ledger_reviews",
               "contact_erasures"}


def _parents(script: Script) -> tuple[str, ...]:
    down = script.down_revision
    if down is None:
        return ()
    return (down,) if isinstance(down, str) else tuple(down)


def _number(revision: str) -> int:
    return int(revision[:4])


def test_migrations_form_one_chain() -> None:
    heads = script_heads()
    assert len(heads) == 1, f"the migrations have {len(heads)} heads {sorted(heads)}: give the new migration the " \
                            "previous head as its down_revision"
    scripts = {s.revision: s for s in script_directory().walk_revisions()}

    # File names: NNNN_<name>.py, the stem is the revision id, and no number is used twice.
    files = sorted((MIGRATIONS / "versions").glob("*.py"))
    for path in files:
        assert FILE_NAME.fullmatch(path.name), f"{path.name} is not named NNNN_<domain>_<what>.py"
    for script in scripts.values():
        assert script.path is not None and Path(script.path).stem == script.revision, \
            f"revision {script.revision!r} is in {script.path}: a migration's file stem is its revision id"
    assert len({p.name[:4] for p in files}) == len(files), "two migration files share a number"
    assert {p.stem for p in files} == set(scripts), "every migration file is a revision, every revision a file"
    for script in scripts.values():
        for parent in _parents(script):
            assert _number(parent) < _number(script.revision), f"{script.revision} follows the later {parent}"

    # The merge and everything it descends from: the only part of the history allowed to branch.
    before: set[str] = set()
    pending = [MERGE]
    while pending:
        revision = pending.pop()
        if revision not in before:
            before.add(revision)
            pending += _parents(scripts[revision])
    after = set(scripts) - before

    # From the head down to the merge, each revision has exactly one parent, and that walk meets every
    # revision added since the merge (none hangs off an older revision, none merges two lines again).
    chain: list[str] = []
    revision = heads[0]
    while revision != MERGE:
        script = scripts[revision]
        parents = _parents(script)
        assert len(parents) == 1, f"{revision} has down_revision {script.down_revision!r}: after {MERGE} " \
                                  "each migration has exactly one, the previous head"
        assert not script.dependencies, f"{revision} depends_on {script.dependencies!r}: keep the chain linear"
        chain.append(revision)
        revision = parents[0]
    assert set(chain) == after, f"not on the chain from {MERGE} to the head: {sorted(after - set(chain))}"


def _server(url: str) -> str:
    return plain_url(url).rsplit("/", 1)[0]


@pytest.fixture
def empty_database_url(database_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"nudge_migrations_{uuid.uuid4().hex[:8]}"
    admin = f"{_server(database_url)}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{_server(database_url)}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# What the migrations own in the public schema, each kind as a set of comparable rows whose first column names
# the table or index. Alembic's own version table (kept, empty, after a downgrade to base) is left out.
SCHEMA_QUERIES = {
    "tables": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity"
               " FROM information_schema.columns WHERE table_schema = 'public'",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                   " WHERE connamespace = 'public'::regnamespace",
    "sequences": "SELECT relname FROM pg_class WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace",
    "functions": "SELECT oid::regprocedure::text, md5(prosrc), proconfig::text FROM pg_proc"
                 " WHERE pronamespace = 'public'::regnamespace",
    "triggers": "SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE NOT tgisinternal",
    "storage": "SELECT relname, reloptions::text FROM pg_class"
               " WHERE relnamespace = 'public'::regnamespace AND reloptions IS NOT NULL",
}


def _schema(url: str) -> dict[str, set[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return {kind: {row for row in conn.execute(query).fetchall()
                       if not str(row[0]).startswith("alembic_version")}
                for kind, query in SCHEMA_QUERIES.items()}


def test_upgrade_downgrade_upgrade_on_empty_database(empty_database_url: str) -> None:
    url = empty_database_url
    assert {kind: rows for kind, rows in _schema(url).items() if rows} == {}

    upgrade(url, "head")
    assert current_heads(url) == set(script_heads())
    first = _schema(url)
    tables = {t for (t,) in first["tables"]}
    assert SOME_TABLES <= tables, f"missing after upgrade: {sorted(SOME_TABLES - tables)}"

    downgrade(url, "base")
    assert current_heads(url) == set()
    # Every table, index, sequence, function and trigger the migrations made is gone.
    assert {kind: rows for kind, rows in _schema(url).items() if rows} == {}

    upgrade(url, "head")
    assert current_heads(url) == set(script_heads())
    again = _schema(url)
    # The downgrade undid exactly what the upgrade did: the second upgrade builds the same schema.
    assert {kind: (first[kind] ^ again[kind]) for kind in first if first[kind] != again[kind]} == {}
