"""API keys: stored as a public prefix plus a SHA-256 hash of the secret."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ARRAY, DateTime, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from domain.keys import IssuedKey, Scope, hash_secret, issue_key, parse_key
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


async def create_key(session: AsyncSession, name: str, scopes: list[Scope]) -> IssuedKey:
    issued = issue_key()
    session.add(ApiKey(name=name, prefix=issued.prefix, secret_hash=hash_secret(issued.secret),
                       scopes=[s.value for s in scopes]))
    await session.flush()
    return issued


async def find_scopes(session: AsyncSession, token: str) -> list[Scope] | None:
    """The scopes of a valid, unrevoked key, or None."""
    parsed = parse_key(token)
    if parsed is None:
        return None
    row = (await session.execute(
        select(ApiKey.secret_hash, ApiKey.scopes).where(ApiKey.prefix == parsed.prefix, ApiKey.revoked_at.is_(None))
    )).one_or_none()
    if row is None or not parsed.matches(row.secret_hash):
        return None
    return [Scope(s) for s in row.scopes]


async def has_admin_key(session: AsyncSession) -> bool:
    found = await session.scalar(
        select(ApiKey.id).where(ApiKey.scopes.any(Scope.ADMIN.value), ApiKey.revoked_at.is_(None)).limit(1)
    )
    return found is not None


async def revoke_key(session: AsyncSession, prefix: str) -> bool:
    result = await session.execute(
        update(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=datetime.now().astimezone())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
