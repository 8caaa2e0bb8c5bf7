"""Contacts: create or update, list with filters, get, update, erase, and a contact's events."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response

from api.deps import Admin, Reader, Session
from api.schemas.contacts import (ContactDetail, ContactIn, ContactOut, ContactPage, ContactPatch, EventOut,
                                  EventPage, IdentityOut)
from domain.errors import DomainError, NotFound
from domain.events import IdentityKind
from store import contacts as store
from store import events as event_store

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


class BadFilter(DomainError):
    status = 400
    title = "Invalid filter"


@router.post("", response_model=ContactOut, status_code=201, dependencies=[Admin],
             summary="Create a contact, or update the one with the same user_id")
async def upsert_contact(body: ContactIn, session: Session) -> ContactOut:
    contact = await store.upsert_contact(session, user_id=body.user_id, email=body.email, phone=body.phone,
                                         timezone=body.timezone, traits=body.traits)
    return ContactOut.model_validate(contact)


def _filter(email: str | None, user_id: str | None, identity: str | None, traits: str | None,
            seen_after: datetime | None, seen_before: datetime | None,
            created_after: datetime | None) -> store.ContactFilter:
    pair = None
    if identity is not None:
        kind, _, value = identity.partition(":")
        if kind not in set(IdentityKind) or not value:
            raise BadFilter(f"`identity` is `kind:value` with kind one of {', '.join(IdentityKind)}.")
        pair = (kind, value)
    trait_filter = None
    if traits is not None:
        try:
            trait_filter = orjson.loads(traits)
        except orjson.JSONDecodeError:
            trait_filter = None
        if not isinstance(trait_filter, dict):
            raise BadFilter('`traits` is a JSON object of trait values to match, e.g. {"plan": "pro"}.')
    return store.ContactFilter(email=email, user_id=user_id, identity=pair, traits=trait_filter,
                               seen_after=seen_after, seen_before=seen_before, created_after=created_after)


@router.get("", response_model=ContactPage, dependencies=[Reader],
            summary="List contacts with filters (keyset pagination by id)")
async def list_contacts(
    session: Session,
    after: Annotated[int, Query(ge=0, description="Return contacts with id greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    email: Annotated[str | None, Query(description="Exact email, case-insensitive.")] = None,
    user_id: Annotated[str | None, Query()] = None,
    identity: Annotated[str | None, Query(description="`kind:value`, e.g. `anonymous_id:a-93d1`.")] = None,
    traits: Annotated[str | None, Query(description='JSON object the traits must contain, e.g. {"plan":"pro"}.')] = None,
    seen_after: Annotated[datetime | None, Query(description="last_seen_at at or after this.")] = None,
    seen_before: Annotated[datetime | None, Query(description="last_seen_at before this.")] = None,
    created_after: Annotated[datetime | None, Query()] = None,
) -> ContactPage:
    where = _filter(email, user_id, identity, traits, seen_after, seen_before, created_after)
    rows = await store.list_contacts(session, after_id=after, limit=limit, where=where)
    items = [ContactOut.model_validate(r) for r in rows]
    return ContactPage(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.get("/{contact_id}", response_model=ContactDetail, dependencies=[Reader],
            summary="Get one contact with its identities (a merged contact's id answers with the survivor)")
async def get_contact(contact_id: int, session: Session) -> ContactDetail:
    contact = await store.get_contact(session, contact_id)
    if contact is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    detail = ContactDetail.model_validate(contact)
    detail.identities = [IdentityOut.model_validate(i) for i in await store.identities_of(session, contact.id)]
    return detail


@router.patch("/{contact_id}", response_model=ContactOut, dependencies=[Admin], summary="Update a contact")
async def update_contact(contact_id: int, body: ContactPatch, session: Session) -> ContactOut:
    changes = body.model_dump(include={"email", "phone", "timezone"}, exclude_unset=True)
    contact = await store.update_contact(session, contact_id, changes=changes, traits=body.traits,
                                         unset_traits=body.unset_traits)
    if contact is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    return ContactOut.model_validate(contact)


@router.delete("/{contact_id}", status_code=204, dependencies=[Admin],
               summary="Erase a contact (right to erasure): personal data, identities, events and aggregates")
async def erase_contact(contact_id: int, session: Session) -> Response:
    if not await event_store.erase_contact(session, contact_id):
        raise NotFound(f"Contact {contact_id} does not exist.")
    return Response(status_code=204)


@router.get("/{contact_id}/events", response_model=EventPage, dependencies=[Reader],
            summary="A contact's events, newest first (keyset pagination by event id)")
async def contact_events(
    contact_id: int, session: Session,
    before: Annotated[int | None, Query(ge=1, description="Return events with id lower than this.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    rows = await event_store.contact_events(session, contact_id, before_id=before, limit=limit)
    items = [EventOut(**r) for r in rows]
    return EventPage(items=items, next_before=items[-1].id if len(items) == limit else None)
