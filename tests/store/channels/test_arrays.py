"""Array literals read back by Postgres exactly as the values they were written from: quotes, backslashes, braces,
commas, spaces, NULLs, the text 'NULL', empty strings, offsets and empty arrays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.channels.arrays import bools, ints, texts, times


async def test_literals_round_trip(sessions: async_sessionmaker[AsyncSession]) -> None:
    words = ['delivery:1:s1:2', 'a "quoted" {brace}, comma', "back\\slash", "", "NULL", None, " space ", "中文"]
    plain = ["delivery:1:s1:2", "x y", "{}"]
    numbers = [1, None, -(2**62)]
    at = datetime(2026, 3, 29, 1, 30, 15, 123456, tzinfo=UTC)
    stamps = [at, None, at.astimezone(timezone(timedelta(hours=10, minutes=30))), at]
    flags = [True, None, False]
    async with sessions() as s:
        row = (await s.execute(text("""
            SELECT CAST(:w AS text[]), CAST(:p AS text[]), CAST(:n AS bigint[]), CAST(:t AS timestamptz[]),
                   CAST(:b AS boolean[]), CAST(:e AS text[]), CAST(:ei AS bigint[])
        """), {"w": texts(words), "p": texts(plain), "n": ints(numbers), "t": times(stamps), "b": bools(flags),
               "e": texts([]), "ei": ints([])})).one()
    assert list(row[0]) == words
    assert list(row[1]) == plain
    assert list(row[2]) == numbers
    assert list(row[3]) == stamps
    assert list(row[4]) == flags
    assert list(row[5]) == [] and list(row[6]) == []
