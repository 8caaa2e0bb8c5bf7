"""Integers bounded to what the columns they are compared with hold, for path and query parameters and body fields
alike. Postgres refuses a number outside its column's type outright (a 500 before these bounds); now it is a 422
naming the parameter. tests/api/test_hygiene.py walks the OpenAPI and fails on any integer without both bounds.
"""

from __future__ import annotations

from typing import Annotated

from annotated_types import Ge, Le
from pydantic import Strict

# Every id column is bigint (store/migrations), whose maximum is 2^63 - 1. The bound is that rounded down to what a
# float64 holds exactly, because OpenAPI tooling (FastAPI's own schema models among them) writes bounds as floats:
# the published maximum is then the real one. An identity sequence never gets near either.
ID_MAX = 2**63 - 1024
INT_MAX = 2**31 - 1  # integer (int4) columns: counts such as a risk rule's max_count

Id = Annotated[int, Ge(1), Le(ID_MAX)]
"""A row id: contact, segment, campaign, program, reward, finding, review, posting, event."""

StrictId = Annotated[int, Strict(), Ge(1), Le(ID_MAX)]
"""An id in a JSON body that must be a JSON integer (not "12" or 12.0)."""

Cursor = Annotated[int, Ge(0), Le(ID_MAX)]
"""Keyset pagination: items with an id greater than this; 0 starts at the beginning."""
