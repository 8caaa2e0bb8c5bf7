"""Array parameters for the batch statements, written as Postgres array literals (`{1,2}`, `{"a","b"}`) and cast in
SQL (`CAST(:c AS bigint[])`). psycopg dumps a Python list element by element in Python, with a regular expression
per element to decide on quoting: the largest CPU cost of a delivery round (about a third of the send path's
Python time in `nudge bench journey`). Joining strings is done in C; every text is quoted, so no test is needed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def ints(values: Iterable[int | None]) -> str:
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def texts(values: Iterable[str | None]) -> str:
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def times(values: Iterable[datetime | None]) -> str:
    """Aware datetimes (ISO 8601 with their offset, which timestamptz reads exactly)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.isoformat() + '"' for v in values) + "}"


def bools(values: Iterable[bool | None]) -> str:
    return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"
