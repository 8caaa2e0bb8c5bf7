"""Array parameters for the batch statements, written as Postgres array literals (`{1,2}`, `{"a","b"}`) and cast in
SQL (`CAST(:c AS bigint[])`). psycopg dumps a Python list element by element in Python, with a regular expression
per element to decide on quoting: the largest CPU cost of a delivery round (about a third of the send path's
Python time in `nudge bench journey`). Here the usual case is one `str.join`, done in C."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def ints(values: Iterable[int | None]) -> str:
    vs = list(values)
    if None not in vs:
        return "{" + ",".join(map(str, vs)) + "}"
    return "{" + ",".join("NULL" if v is None else str(v) for v in vs) + "}"


def texts(values: Iterable[str | None]) -> str:
    """Every element quoted; escaping only when an element holds a quote or a backslash."""
    vs = list(values)
    if not vs:
        return "{}"
    if None not in vs:
        joined = '","'.join(vs)
        if '"' not in joined and "\\" not in joined:
            return '{"' + joined + '"}'
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in vs) + "}"


def times(values: Iterable[datetime | None]) -> str:
    """Aware datetimes (ISO 8601 with their offset, which timestamptz reads exactly); a batch's are mostly one."""
    vs = list(values)
    text = {v: v.isoformat() for v in set(vs) if v is not None}
    return "{" + ",".join("NULL" if v is None else '"' + text[v] + '"' for v in vs) + "}"


def bools(values: Iterable[bool | None]) -> str:
    return "{" + ",".join("NULL" if v is None else ("t" if v else "f") for v in values) + "}"
