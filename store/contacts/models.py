"""Contacts' SQLAlchemy models: the contact, its identities and the forwards merges leave."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Text, func
from sqlalchemy import Identity as Generated
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, created_at


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigInteger, Generated(always=True), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(Text)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", default=dict)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Identity(Base):
    """An identifier (userId, anonymousId, email, phone, wechat openid, device id) owned by one contact."""

    __tablename__ = "identities"

    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    contact_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at()


class ContactMerge(Base):
    __tablename__ = "contact_merges"

    contact_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    merged_into: Mapped[int] = mapped_column(BigInteger)
    merged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
