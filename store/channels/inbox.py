"""The in-app inbox: messages a contact's app lists, marks read and deletes; written by the inbox channel
(activities/channels/inbox.py), idempotent per (contact, message key)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

DISPLAYS = ("toast", "popup", "banner")


@dataclass(frozen=True)
class NewMessage:
    contact_id: int
    key: str
    title: str
    body: str
    display: str = "banner"
    data: dict[str, Any] | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class InboxMessage:
    id: int
    key: str
    title: str
    body: str
    display: str
    data: dict[str, Any]
    created_at: datetime
    read_at: datetime | None
    expires_at: datetime | None


async def write(session: AsyncSession, messages: Sequence[NewMessage]) -> dict[tuple[int, str], int]:
    """Insert the messages (a key already there is left as it is); (contact, key) → message id, for all of them."""
    if not messages:
        return {}
    params = {"c": [m.contact_id for m in messages], "k": [m.key for m in messages],
              "t": [m.title for m in messages], "b": [m.body for m in messages],
              "d": [m.display if m.display in DISPLAYS else "banner" for m in messages],
              "j": [orjson.dumps(m.data or {}).decode() for m in messages],
              "e": [m.expires_at for m in messages]}
    await session.execute(text("""
        INSERT INTO inbox_messages (contact_id, key, title, body, display, data, expires_at)
        SELECT c, k, t, b, d, CAST(j AS jsonb), e FROM unnest(CAST(:c AS bigint[]), CAST(:k AS text[]),
            CAST(:t AS text[]), CAST(:b AS text[]), CAST(:d AS text[]), CAST(:j AS text[]),
            CAST(:e AS timestamptz[])) AS m(c, k, t, b, d, j, e)
        ON CONFLICT (contact_id, key) DO NOTHING
    """), params)
    rows = await session.execute(text("""
        SELECT i.contact_id, i.key, i.id FROM inbox_messages i
        JOIN unnest(CAST(:c AS bigint[]), CAST(:k AS text[])) AS m(c, k) ON i.contact_id = m.c AND i.key = m.k
    """), {"c": params["c"], "k": params["k"]})
    return {(r.contact_id, r.key): r.id for r in rows}


_LIVE = "contact_id = :c AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > :now)"


async def listing(session: AsyncSession, contact_id: int, *, now: datetime, before: int | None, limit: int,
                  unread_only: bool) -> tuple[list[InboxMessage], int]:
    """The contact's live messages, newest first, and the unread count."""
    rows = await session.execute(text(f"""
        SELECT id, key, title, body, display, data, created_at, read_at, expires_at FROM inbox_messages
        WHERE {_LIVE} AND (CAST(:before AS bigint) IS NULL OR id < :before)
          AND (NOT :unread OR read_at IS NULL)
        ORDER BY id DESC LIMIT :n
    """), {"c": contact_id, "now": now, "before": before, "n": limit, "unread": unread_only})
    unread = await session.scalar(text(f"SELECT count(*) FROM inbox_messages WHERE {_LIVE} AND read_at IS NULL"),
                                  {"c": contact_id, "now": now})
    return [InboxMessage(*r) for r in rows], int(unread or 0)


async def mark_read(session: AsyncSession, contact_id: int, ids: Sequence[int] | None, *, now: datetime) -> int:
    """Mark the given messages (all when None) read; how many changed."""
    result = await session.execute(text(f"""
        UPDATE inbox_messages SET read_at = :now
        WHERE {_LIVE} AND read_at IS NULL AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids))
    """), {"c": contact_id, "now": now, "ids": list(ids) if ids is not None else None})
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def delete(session: AsyncSession, contact_id: int, message_id: int, *, now: datetime) -> bool:
    result = await session.execute(text(
        "UPDATE inbox_messages SET deleted_at = :now WHERE contact_id = :c AND id = :id AND deleted_at IS NULL"),
        {"c": contact_id, "id": message_id, "now": now})
    return bool(result.rowcount)  # type: ignore[attr-defined]
