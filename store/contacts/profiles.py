"""Contacts: the people Nudge talks to, with traits (JSONB) and channel addresses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, Text, func, select, update
from sqlalchemy import cast as sa_cast
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from store.contacts.models import Contact, ContactMerge, Identity


@dataclass(frozen=True)
class ContactFilter:
    email: str | None = None
    user_id: str | None = None
    identity: tuple[str, str] | None = None
    traits: dict[str, Any] | None = None   # containment: every given trait equals
    seen_after: datetime | None = None
    seen_before: datetime | None = None
    created_after: datetime | None = None


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
        await _attach(session, contact)
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
    contact = (await session.execute(
        select(Contact).from_statement(stmt).execution_options(populate_existing=True))).scalar_one()
    await _attach(session, contact)
    return contact


async def _attach(session: AsyncSession, contact: Contact) -> None:
    """Keep identities in step with the contact's own columns (first owner wins an email or phone)."""
    rows = [{"kind": kind, "value": value, "contact_id": contact.id} for kind, value in
            (("user_id", contact.user_id), ("email", (contact.email or "").lower() or None), ("phone", contact.phone))
            if value]
    if rows:
        await session.execute(insert(Identity).values(rows).on_conflict_do_nothing())


async def list_contacts(session: AsyncSession, *, after_id: int, limit: int,
                        where: ContactFilter | None = None) -> Sequence[Contact]:
    query = select(Contact).where(Contact.id > after_id)
    f = where or ContactFilter()
    if f.email is not None:
        query = query.where(func.lower(Contact.email) == f.email.lower())
    if f.user_id is not None:
        query = query.where(Contact.user_id == f.user_id)
    if f.identity is not None:
        owner = select(Identity.contact_id).where(Identity.kind == f.identity[0], Identity.value == f.identity[1])
        query = query.where(Contact.id.in_(owner.scalar_subquery()))
    if f.traits:
        query = query.where(Contact.traits.contains(f.traits))
    if f.seen_after is not None:
        query = query.where(Contact.last_seen_at >= f.seen_after)
    if f.seen_before is not None:
        query = query.where(Contact.last_seen_at < f.seen_before)
    if f.created_after is not None:
        query = query.where(Contact.created_at >= f.created_after)
    rows = await session.scalars(query.order_by(Contact.id).limit(limit))
    return rows.all()


async def get_contact(session: AsyncSession, contact_id: int) -> Contact | None:
    """The contact, following merge forwards (an anonymous contact merged into a known one)."""
    return await session.get(Contact, await follow(session, contact_id))  # the first get is in the identity map


async def follow(session: AsyncSession, contact_id: int) -> int:
    """The contact a read addressed to `contact_id` is about: the survivor when `contact_id` was merged away,
    else `contact_id` itself (which may not exist). Every read by contact id goes through here or get_contact."""
    if await session.get(Contact, contact_id) is not None:
        return contact_id
    survivor = await session.scalar(select(ContactMerge.merged_into).where(ContactMerge.contact_id == contact_id))
    return contact_id if survivor is None else int(survivor)


async def update_contact(session: AsyncSession, contact_id: int, *, changes: dict[str, Any],
                         traits: dict[str, Any], unset_traits: Sequence[str]) -> Contact | None:
    """Set the given columns, merge `traits` key by key and drop `unset_traits`."""
    new_traits = Contact.traits.op("||")(traits).op("-")(sa_cast(list(unset_traits), ARRAY(Text)))
    stmt = (update(Contact).where(Contact.id == contact_id)
            .values(**changes, traits=new_traits, updated_at=func.now()).returning(Contact))
    contact = (await session.execute(
        select(Contact).from_statement(stmt).execution_options(populate_existing=True))).scalar_one_or_none()
    if contact is not None:
        await _attach(session, contact)
    return contact


async def identities_of(session: AsyncSession, contact_id: int) -> Sequence[Identity]:
    rows = await session.scalars(select(Identity).where(Identity.contact_id == contact_id)
                                 .order_by(Identity.kind, Identity.value))
    return rows.all()


async def existing_ids(session: AsyncSession, ids: Sequence[int]) -> set[int]:
    rows = await session.scalars(select(Contact.id).where(Contact.id.in_(ids)))
    return set(rows.all())
