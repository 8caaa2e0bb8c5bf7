"""Contacts: create or update, list, get."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, Session
from api.schemas.contacts import ContactIn, ContactOut, ContactPage
from domain.errors import NotFound
from store import contacts as store

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


@router.post("", response_model=ContactOut, status_code=201, dependencies=[Admin],
             summary="Create a contact, or update the one with the same user_id")
async def upsert_contact(body: ContactIn, session: Session) -> ContactOut:
    contact = await store.upsert_contact(session, user_id=body.user_id, email=body.email, phone=body.phone,
                                         timezone=body.timezone, traits=body.traits)
    return ContactOut.model_validate(contact)


@router.get("", response_model=ContactPage, dependencies=[Reader], summary="List contacts (keyset pagination)")
async def list_contacts(
    session: Session,
    after: Annotated[int, Query(ge=0, description="Return contacts with id greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ContactPage:
    rows = await store.list_contacts(session, after_id=after, limit=limit)
    items = [ContactOut.model_validate(r) for r in rows]
    return ContactPage(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.get("/{contact_id}", response_model=ContactOut, dependencies=[Reader], summary="Get one contact")
async def get_contact(contact_id: int, session: Session) -> ContactOut:
    contact = await store.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    return ContactOut.model_validate(contact)
