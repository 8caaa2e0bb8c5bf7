"""The architecture holds: import contracts (pyproject's [tool.importlinter], the source of truth for the layers)
and SQL only in store/."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "domain", "channels", "activities", "workflows", "api", "dashboards", "nudge")
# Outside store/ but allowed to speak SQL, each for a reason.
EXEMPT = {
    "bench": "benchmarks load fixtures with COPY and time raw statements to measure the physical limit itself",
}
SQL_NAMES = {"text", "select", "insert", "update", "delete", "literal_column", "table", "column", "sql"}
SQL_MODULES = ("sqlalchemy", "psycopg")
# Method calls that run SQL on a session, connection or cursor.
RUNS_SQL = {"execute", "executemany", "scalar", "scalars", "cursor", "copy"}
# A call that looks like one of those but is not SQL.
NOT_SQL = {("domain/rules.py", "program.execute"): "a compiled CEL program"}
SQL_LITERAL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE|ALTER|DROP|VACUUM|COPY|TRUNCATE|SET)\s")


def _modules() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((ROOT / package).rglob("*.py"))


def _receiver(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else "?"


def sql_outside_store(path: Path, source: str) -> list[str]:
    """Where a module outside store/ builds or runs SQL: SQL constructors imported from the database libraries,
    calls that execute statements, and string literals that are statements."""
    where = path.relative_to(ROOT).as_posix()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in SQL_MODULES:
            names = {a.name for a in node.names} & SQL_NAMES
            if names:
                found.append(f"{where}:{node.lineno} imports {', '.join(sorted(names))} from {node.module}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RUNS_SQL:
            call = f"{_receiver(node.func.value)}.{node.func.attr}"
            if (where, call) not in NOT_SQL:
                found.append(f"{where}:{node.lineno} calls {call}(…)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_LITERAL.match(node.value):
            found.append(f"{where}:{node.lineno} holds a SQL statement {node.value.strip()[:40]!r}")
    return found


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "broken" not in result.stdout.split("Contracts:")[-1].split(",")[0]  # "Contracts: N kept, 0 broken."


def test_no_sql_outside_store() -> None:
    found = [hit for path in _modules() for hit in sql_outside_store(path, path.read_text())]
    assert not found, "SQL belongs in store/ (a query or a service function there):\n" + "\n".join(found)


def test_the_sql_check_sees_each_kind_of_sql() -> None:
    """The check is only as good as what it notices: each form of SQL a router could grow is caught."""
    path = ROOT / "api" / "example.py"
    cases = {
        "from sqlalchemy import text\n": "imports text",
        "from sqlalchemy import select, func\n": "imports select",
        "async def f(s):\n    await s.execute(q)\n": "calls s.execute",
        "async def f(session):\n    return await session.scalars(q)\n": "calls session.scalars",
        "def f(conn):\n    conn.cursor()\n": "calls conn.cursor",
        "Q = '''\n    SELECT id FROM contacts\n'''\n": "holds a SQL statement",
        "Q = 'DELETE FROM events WHERE contact_id = %s'\n": "holds a SQL statement",
    }
    for source, expected in cases.items():
        hits = sql_outside_store(path, source)
        assert len(hits) == 1 and expected in hits[0], (source, hits)
    assert sql_outside_store(path, "x = 'Select a segment'\nprogram = compile(x)\n") == []


def test_exemptions_name_real_packages() -> None:
    for name in EXEMPT:
        assert (ROOT / name).is_dir(), f"{name} is exempt from the SQL rule but does not exist"
        assert name not in PACKAGES
