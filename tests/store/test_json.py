"""JSON read from Postgres (`store.db.json_loads`, every connection's loader): what the standard library reads,
faster; big integers stay exact and numbers beyond a double's range still load, from a real jsonb column too."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import json_loads

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=30),
                    st.floats(allow_nan=False, allow_infinity=False))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@given(values)
@settings(max_examples=300)
def test_it_reads_what_the_standard_library_reads(value: Any) -> None:
    encoded = json.dumps(value)
    assert json_loads(encoded.encode()) == json.loads(encoded)
    assert json_loads(memoryview(encoded.encode())) == json.loads(encoded)


async def test_values_from_jsonb_keep_big_integers_exact_and_huge_numbers(
        sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions() as s:
        found = await s.scalar(text("""SELECT CAST('{"id": 123456789012345678901234567890, "big": 1e400,
                                                      "n": 7, "tags": ["a"]}' AS jsonb)"""))
    assert found["id"] == 123456789012345678901234567890 and isinstance(found["id"], int)
    assert found["big"] == 10**400 and found["n"] == 7 and found["tags"] == ["a"]  # jsonb writes 1e400 out whole
    assert math.isinf(json_loads(b'{"x": 1e400}')["x"])  # orjson refuses it; the standard library's reading stands
