"""The suppression list: (channel, address) never sent to again — hard bounces, complaints, manual entries. Keyed
by a hash of the address so the list works for addresses of contacts that no longer exist."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from store.channels.addresses import address_hash
from store.channels.arrays import texts

REASONS = ("bounce", "complaint", "unsubscribe", "manual")


@dataclass(frozen=True)
class Suppression:
    channel: str
    address_hash: str
    contact_id: int | None
    reason: str
    note: str | None
    since: datetime


async def suppressed(session: AsyncSession, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Of (channel, address hash) pairs, those on the list → reason."""
    pairs = list(set(pairs))
    if not pairs:
        return {}
    rows = await session.execute(text("""
        SELECT s.channel, s.address_hash, s.reason FROM suppressions s
        JOIN unnest(CAST(:ch AS text[]), CAST(:h AS text[])) AS k(channel, h)
          ON s.channel = k.channel AND s.address_hash = k.h
    """), {"ch": texts(p[0] for p in pairs), "h": texts(p[1] for p in pairs)})
    return {(r.channel, r.address_hash): r.reason for r in rows}


async def add(session: AsyncSession, entries: Sequence[tuple[str, str, int | None, str, str | None]]) -> int:
    """Add (channel, address hash, contact, reason, note) entries; existing ones keep their first reason. Rows added."""
    if not entries:
        return 0
    result = await session.execute(text("""
        INSERT INTO suppressions (channel, address_hash, contact_id, reason, note)
        SELECT * FROM unnest(CAST(:ch AS text[]), CAST(:h AS text[]), CAST(:c AS bigint[]), CAST(:r AS text[]),
                             CAST(:n AS text[]))
        ON CONFLICT DO NOTHING
    """), {"ch": [e[0] for e in entries], "h": [e[1] for e in entries], "c": [e[2] for e in entries],
           "r": [e[3] for e in entries], "n": [e[4] for e in entries]})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def add_address(session: AsyncSession, channel: str, address: str, reason: str, *,
                      contact_id: int | None = None, note: str | None = None) -> str:
    digest = address_hash(channel, address)
    await add(session, [(channel, digest, contact_id, reason, note)])
    return digest


async def remove(session: AsyncSession, channel: str, digest: str) -> bool:
    result = await session.execute(text("DELETE FROM suppressions WHERE channel = :ch AND address_hash = :h"),
                                   {"ch": channel, "h": digest})
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def listing(session: AsyncSession, *, channel: str | None, contact_id: int | None, reason: str | None,
                  after: str, limit: int) -> list[Suppression]:
    """Keyset pages ordered by (channel, address hash); `after` is `channel:hash` of the last row seen."""
    rows = await session.execute(text("""
        SELECT channel, address_hash, contact_id, reason, note, since FROM suppressions
        WHERE (CAST(:ch AS text) IS NULL OR channel = :ch) AND (CAST(:c AS bigint) IS NULL OR contact_id = :c)
          AND (CAST(:r AS text) IS NULL OR reason = :r) AND channel || ':' || address_hash > :after
        ORDER BY channel || ':' || address_hash LIMIT :n
    """), {"ch": channel, "c": contact_id, "r": reason, "after": after, "n": limit})
    return [Suppression(*r) for r in rows]


async def get(session: AsyncSession, channel: str, digest: str) -> Suppression | None:
    row = (await session.execute(text("""
        SELECT channel, address_hash, contact_id, reason, note, since FROM suppressions
        WHERE channel = :ch AND address_hash = :h
    """), {"ch": channel, "h": digest})).first()
    return Suppression(*row) if row else None
