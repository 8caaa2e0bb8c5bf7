"""Frequency-cap slots, atomic under concurrency: the messages caps count are rows of `frequency_log` (one per step:
a fallback does not take a second slot), and a batch takes its slots under per-contact advisory locks held to the
end of the caller's transaction, taken in contact order. Two senders racing for a contact's last slot queue on
the lock; the second counts the first's row and is refused. The rule is domain/channels/caps.py."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.channels.caps import Cap, longest_window, reached

_DAY = timedelta(days=1)
LOCK_SPACE = 19  # the advisory-lock key space of frequency caps (hashtextextended seed)


async def take(session: AsyncSession, wanted: Sequence[tuple[int, str, str]], caps: Sequence[Cap],
               now: datetime) -> dict[tuple[int, str], Cap | None]:
    """For (contact, delivery key, channel) requests: take a slot (None) or name the cap that refuses it. A key
    that already holds its slot (a retried activity) keeps it."""
    if not wanted or not caps:
        return {(c, k): None for c, k, _ in wanted}
    contacts = sorted({c for c, _, _ in wanted})
    await session.execute(text("""
        SELECT pg_advisory_xact_lock(:space, c::int) FROM (
            SELECT DISTINCT (hashtextextended(c::text, 0) % 2147483647)::int AS c FROM unnest(CAST(:ids AS bigint[])) c
            ORDER BY 1) AS l
    """), {"space": LOCK_SPACE, "ids": contacts})
    rows = await session.execute(text("""
        SELECT contact_id, key, channel, at FROM frequency_log WHERE contact_id = ANY(:ids) AND at > :since
    """), {"ids": contacts, "since": now - longest_window(caps)})
    history: dict[int, list[tuple[str, datetime]]] = {}
    held: set[tuple[int, str]] = set()
    for r in rows:
        history.setdefault(r.contact_id, []).append((r.channel, r.at))
        held.add((r.contact_id, r.key))
    verdicts: dict[tuple[int, str], Cap | None] = {}
    taken: list[tuple[int, str, str]] = []
    for contact, key, channel in wanted:
        if (contact, key) in held:
            verdicts[(contact, key)] = None
            continue
        cap = reached(caps, history.get(contact, []), channel, now)
        verdicts[(contact, key)] = cap
        if cap is None:
            history.setdefault(contact, []).append((channel, now))
            held.add((contact, key))
            taken.append((contact, key, channel))
    if taken:
        await session.execute(text("""
            INSERT INTO frequency_log (contact_id, key, channel, at)
            SELECT c, k, ch, :now FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]), CAST(:ch AS text[]))
                AS t(c, k, ch)
            ON CONFLICT DO NOTHING
        """), {"now": now, "c": [t[0] for t in taken], "k": [t[1] for t in taken], "ch": [t[2] for t in taken]})
    return verdicts


async def prune(session: AsyncSession, caps: Sequence[Cap], now: datetime) -> int:
    """Forget what no cap counts any more."""
    result = await session.execute(text("DELETE FROM frequency_log WHERE at <= :since"),
                                   {"since": now - max(longest_window(caps), _DAY)})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]

