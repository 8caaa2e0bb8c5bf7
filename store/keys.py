"""API keys: stored as a public prefix plus a SHA-256 hash of the secret; and the dashboard sessions opened with
them, stored as the hash of their token, ended by sign-out, expiry or the key's revocation."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ARRAY, DateTime, ForeignKey, String, Text, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.keys import IssuedKey, Scope, allows, hash_secret, issue_key, issue_session, parse_key, session_hash
from store.base import Base, created_at


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = created_at()
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = created_at()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


async def create_key(session: AsyncSession, name: str, scopes: list[Scope]) -> IssuedKey:
    issued = issue_key()
    session.add(ApiKey(name=name, prefix=issued.prefix, secret_hash=hash_secret(issued.secret),
                       scopes=[s.value for s in scopes]))
    await session.flush()
    return issued


async def _live_key(session: AsyncSession, token: str) -> Any | None:
    """The (id, scopes) row of a valid, unrevoked key, or None."""
    parsed = parse_key(token)
    if parsed is None:
        return None
    row = (await session.execute(
        select(ApiKey.id, ApiKey.secret_hash, ApiKey.scopes)
        .where(ApiKey.prefix == parsed.prefix, ApiKey.revoked_at.is_(None))
    )).one_or_none()
    if row is None or not parsed.matches(row.secret_hash):
        return None
    return row


async def find_scopes(session: AsyncSession, token: str) -> list[Scope] | None:
    """The scopes of a valid, unrevoked key, or None."""
    row = await _live_key(session, token)
    return None if row is None else [Scope(s) for s in row.scopes]


async def has_admin_key(session: AsyncSession) -> bool:
    found = await session.scalar(
        select(ApiKey.id).where(ApiKey.scopes.any(Scope.ADMIN.value), ApiKey.revoked_at.is_(None)).limit(1)
    )
    return found is not None


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    """Revoke a key and end the dashboard sessions opened with it (lookups refuse them anyway, `session_scopes`)."""
    result = await session.execute(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now().astimezone()).returning(ApiKey.id)
    )
    revoked = result.scalars().all()
    if revoked:
        await session.execute(delete(DashboardSession).where(DashboardSession.key_id.in_(revoked)))
    return bool(revoked)


async def open_session(session: AsyncSession, key: str, needs: Scope, lifetime: timedelta,
                       replacing: str | None = None) -> str | None:
    """Dashboard sign-in: a new session token for a valid key that allows `needs`, or None. The session the browser
    held before (`replacing`) ends, and so does every expired one: the table holds live sessions only."""
    row = await _live_key(session, key)
    if row is None or not allows([Scope(s) for s in row.scopes], needs):
        return None
    await session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= func.now()))
    if replacing is not None:
        await close_session(session, replacing)
    token = issue_session()
    await session.execute(insert(DashboardSession).values(
        token_hash=hash_secret(token), key_id=row.id, expires_at=func.now() + lifetime))
    return token


async def session_scopes(session: AsyncSession, token: str) -> list[Scope] | None:
    """The scopes of the key a live session was opened with; None when the token is malformed, unknown, expired,
    ended, or its key revoked."""
    digest = session_hash(token)
    if digest is None:
        return None
    scopes = await session.scalar(
        select(ApiKey.scopes).join(DashboardSession, DashboardSession.key_id == ApiKey.id)
        .where(DashboardSession.token_hash == digest, DashboardSession.expires_at > func.now(),
               ApiKey.revoked_at.is_(None))
    )
    return None if scopes is None else [Scope(s) for s in scopes]


async def close_session(session: AsyncSession, token: str) -> None:
    """Sign-out: the session ends (an unknown or malformed token is already no session)."""
    digest = session_hash(token)
    if digest is not None:
        await session.execute(delete(DashboardSession).where(DashboardSession.token_hash == digest))
