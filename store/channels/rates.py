"""Per-provider rate limits shared by every worker process: one token-bucket row per provider, refilled and taken
in one statement under the row's lock, so N workers together stay within the provider's rate."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def take(session: AsyncSession, provider: str, wanted: int, *, rate: float, burst: int,
               now: datetime) -> int:
    """Take up to `wanted` tokens from `provider`'s bucket (`rate` a second, at most `burst` saved); how many."""
    if wanted <= 0:
        return 0
    await session.execute(text("""
        INSERT INTO provider_rate_limits (provider, tokens, updated_at) VALUES (:p, :burst, :now)
        ON CONFLICT DO NOTHING
    """), {"p": provider, "burst": burst, "now": now})
    granted = await session.scalar(text("""
        WITH cur AS (
            SELECT provider, least(CAST(:burst AS float8), tokens + :rate * greatest(0, extract(epoch FROM
                                   (CAST(:now AS timestamptz) - updated_at)))) AS available
            FROM provider_rate_limits WHERE provider = :p FOR UPDATE)
        UPDATE provider_rate_limits r SET tokens = cur.available - least(:wanted, floor(cur.available)),
            updated_at = greatest(r.updated_at, :now)
        FROM cur WHERE r.provider = cur.provider
        RETURNING CAST(least(:wanted, floor(cur.available)) AS int)
    """), {"p": provider, "burst": burst, "rate": rate, "now": now, "wanted": wanted})
    return int(granted or 0)
