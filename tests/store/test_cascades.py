"""Both cross-domain cascades know every table that holds a contact: each table with a contact column in the live
catalogue is declared by a step of the contact merge (store/merges.py) and by a step of the right to erasure
(store/erasure.py), or exempt here with a reason; and every declared table exists, so declarations cannot rot."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from types import ModuleType

import psycopg
import pytest

from store import erasure, merges

# Tables with a contact column that neither cascade has to know about, each with the reason.
EXEMPT: dict[str, str] = {}

# Base tables of the public schema (a partitioned table once, not each of its partitions) with a contact column:
# `contact_id`, `contact_ids` or `…_contact_id`, or a foreign key to contacts; and contacts itself.
CONTACT_TABLES = """
SELECT c.table_name FROM information_schema.columns c
JOIN information_schema.tables t USING (table_schema, table_name)
WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
  AND (c.column_name ~ '(^|_)contact_ids?$' OR c.table_name = 'contacts')
UNION
SELECT r.relname FROM pg_constraint f JOIN pg_class r ON r.oid = f.conrelid
WHERE f.contype = 'f' AND f.confrelid = 'public.contacts'::regclass
EXCEPT
SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
"""
TABLES = """
SELECT t.table_name FROM information_schema.tables t
WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
EXCEPT
SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhrelid
"""
CASCADES = {"store/merges.py": merges.STEPS, "store/erasure.py": erasure.STEPS}


def declared(steps: Iterable[ModuleType]) -> dict[str, str]:
    """Table → the step module that declares it."""
    return {table: step.__name__ for step in steps for table in step.TABLES}


def uncovered(conn: psycopg.Connection,
              cascades: Mapping[str, Iterable[ModuleType]] = CASCADES) -> dict[str, list[str]]:
    """Per cascade, the contact tables that none of its steps declares and that are not exempt."""
    tables = {r[0] for r in conn.execute(CONTACT_TABLES)}
    return {cascade: sorted(tables - declared(steps).keys() - EXEMPT.keys()) for cascade, steps in cascades.items()}


def test_every_contact_table_is_covered_by_both_cascades(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        missing = uncovered(conn)
    assert missing == {cascade: [] for cascade in CASCADES}, (
        "A table holds contact ids but a cascade does not say what happens to it. Declare it in the `TABLES` of "
        "its domain's merges and erasure modules (a step of store/merges.py and of store/erasure.py), or exempt "
        f"it in {__name__}.EXEMPT with a reason: {missing}")


def test_every_declared_table_exists(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = {r[0] for r in conn.execute(TABLES)}
    for cascade, steps in CASCADES.items():
        gone = {t: step for t, step in declared(steps).items() if t not in tables}
        assert not gone, f"{cascade}: steps declare tables that do not exist: {gone}"
    assert not EXEMPT.keys() - tables, f"exempt tables that do not exist: {sorted(EXEMPT.keys() - tables)}"


def test_every_step_module_declares_what_it_does_with_each_table() -> None:
    for cascade, steps in CASCADES.items():
        for step in steps:
            assert step.TABLES and all(isinstance(v, str) and v.strip() for v in step.TABLES.values()), (
                cascade, step.__name__)


@pytest.mark.parametrize("column", ["contact_id", "contact_ids", "referrer_contact_id", "REFERENCES contacts"])
def test_a_new_contact_table_fails_the_check(database_url: str, column: str) -> None:
    """What a new domain would do: a table with a contact column, in an uncommitted transaction (and partitioned,
    to show it is reported once). Both cascades report it until it is declared."""
    table = f"probe_{uuid.uuid4().hex[:8]}"
    definition = ("owner bigint REFERENCES contacts (id)" if column == "REFERENCES contacts"
                  else f"{column} bigint{'[]' if column.endswith('ids') else ''}")
    with psycopg.connect(database_url) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint, {definition}) PARTITION BY HASH (id)")
        conn.execute(f"CREATE TABLE {table}_p0 PARTITION OF {table} FOR VALUES WITH (MODULUS 1, REMAINDER 0)")
        assert uncovered(conn) == {cascade: [table] for cascade in CASCADES}
        conn.rollback()
