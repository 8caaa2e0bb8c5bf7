"""Contacts: the people Nudge talks to, with traits (JSONB) and channel addresses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Text, func, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, created_at


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(Text)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}", default=dict)
    created_at: Mapped[datetime] = created_at()
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )


async def upsert_contact(
    session: AsyncSession, *, user_id: str | None, email: str | None, phone: str | None,
    timezone: str | None, traits: dict[str, Any],
) -> Contact:
    """Create a contact, or merge into the one with the same user_id (traits are merged key by key)."""
    values = {"user_id": user_id, "email": email, "phone": phone, "timezone": timezone, "traits": traits}
    if user_id is None:
        contact = Contact(**values)
        session.add(contact)
        await session.flush()
        return contact
    stmt = insert(Contact).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Contact.user_id],
        set_={
            "email": func.coalesce(stmt.excluded.email, Contact.email),
            "phone": func.coalesce(stmt.excluded.phone, Contact.phone),
            "timezone": func.coalesce(stmt.excluded.timezone, Contact.timezone),
            "traits": Contact.traits.op("||")(stmt.excluded.traits),
            "updated_at": func.now(),
        },
    ).returning(Contact)
    return (await session.execute(select(Contact).from_statement(stmt))).scalar_one()


async def list_contacts(session: AsyncSession, *, after_id: int, limit: int) -> Sequence[Contact]:
    rows = await session.scalars(select(Contact).where(Contact.id > after_id).order_by(Contact.id).limit(limit))
    return rows.all()


async def get_contact(session: AsyncSession, contact_id: int) -> Contact | None:
    return await session.get(Contact, contact_id)


async def existing_ids(session: AsyncSession, ids: Sequence[int]) -> set[int]:
    rows = await session.scalars(select(Contact.id).where(Contact.id.in_(ids)))
    return set(rows.all())
