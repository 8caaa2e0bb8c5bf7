"""Provider callbacks already applied (by the provider's event id), so a replayed callback changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def first_seen(session: AsyncSession, provider: str, event_ids: Sequence[str]) -> set[str]:
    """Record the event ids; those not seen before (in the caller's transaction: a refused batch records none)."""
    if not event_ids:
        return set()
    rows = await session.scalars(text("""
        INSERT INTO webhook_receipts (provider, event_id) SELECT :p, e FROM unnest(CAST(:e AS text[])) e
        ON CONFLICT DO NOTHING RETURNING event_id
    """), {"p": provider, "e": list(set(event_ids))})
    return set(rows.all())


EARLY_RECEIPTS_KEPT = timedelta(days=1)  # a send is recorded within minutes of its provider's answer


async def prune(session: AsyncSession, now: datetime, tolerance: timedelta) -> int:
    """Forget ids older than twice the tolerance (a callback that old is refused as stale by its signature), and
    early receipts whose send was never recorded (another system's messages, or a send that failed)."""
    result = await session.execute(text("DELETE FROM webhook_receipts WHERE seen_at < :t"),
                                   {"t": now - 2 * tolerance})
    early = await session.execute(text("DELETE FROM early_receipts WHERE received_at < :t"),
                                  {"t": now - EARLY_RECEIPTS_KEPT})
    return int(result.rowcount or 0) + int(early.rowcount or 0)  # type: ignore[attr-defined]


async def link_secret(session: AsyncSession) -> bytes:
    """The HMAC secret of unsubscribe, open and click links (made by migration 0015, the same for every process)."""
    secret = await session.scalar(text("SELECT secret FROM channel_secrets WHERE name = 'links'"))
    return str(secret).encode()
