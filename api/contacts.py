"""Contacts: create or update, list with filters, get, update, erase, and a contact's events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from api.deps import Admin, Reader, Session, segment_index
from api.params import ID_MAX, Cursor, Id
from api.schemas.contacts import (
    ContactDetail,
    ContactIn,
    ContactOut,
    ContactPage,
    ContactPatch,
    EventOut,
    EventPage,
    IdentityOut,
)
from domain import hygiene
from domain.errors import DomainError, NotFound
from domain.events import IdentityKind
from domain.hygiene import NotJson
from store import erasure
from store.contacts import profiles
from store.events import timeline

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


class BadFilter(DomainError):
    status = 400
    title = "Invalid filter"


@router.post("", response_model=ContactOut, status_code=201, dependencies=[Admin],
             summary="Create a contact, or update the one with the same user_id")
async def upsert_contact(body: ContactIn, session: Session) -> ContactOut:
    contact = await profiles.upsert_contact(session, user_id=body.user_id, email=body.email, phone=body.phone,
                                            timezone=body.timezone, traits=body.traits)
    return ContactOut.model_validate(contact)


def _filter(email: str | None, user_id: str | None, identity: str | None, traits: str | None,
            seen_after: datetime | None, seen_before: datetime | None,
            created_after: datetime | None) -> profiles.ContactFilter:
    pair = None
    if identity is not None:
        kind, _, value = identity.partition(":")
        if kind not in set(IdentityKind) or not value:
            raise BadFilter(f"`identity` is `kind:value` with kind one of {', '.join(IdentityKind)}.")
        pair = (kind, value)
    trait_filter = None
    if traits is not None:
        try:  # JSON holding what no trait can (a NUL, a lone surrogate, deep nesting) is refused naming it
            trait_filter = hygiene.loads(traits.encode(errors="surrogatepass"), "query.traits")
        except NotJson:
            trait_filter = None
        if not isinstance(trait_filter, dict):
            raise BadFilter('`traits` is a JSON object of trait values to match, e.g. {"plan": "pro"}.')
    return profiles.ContactFilter(email=email, user_id=user_id, identity=pair, traits=trait_filter,
                                  seen_after=seen_after, seen_before=seen_before, created_after=created_after)


@router.get("", response_model=ContactPage, dependencies=[Reader],
            summary="List contacts with filters (keyset pagination by id)")
async def list_contacts(
    session: Session,
    after: Annotated[Cursor, Query(description="Return contacts with id greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    email: Annotated[str | None, Query(description="Exact email, case-insensitive.")] = None,
    user_id: Annotated[str | None, Query()] = None,
    identity: Annotated[str | None, Query(description="`kind:value`, e.g. `anonymous_id:a-93d1`.")] = None,
    traits: Annotated[str | None, Query(
        description='JSON object the traits must contain, e.g. {"plan":"pro"}.')] = None,
    seen_after: Annotated[datetime | None, Query(description="last_seen_at at or after this.")] = None,
    seen_before: Annotated[datetime | None, Query(description="last_seen_at before this.")] = None,
    created_after: Annotated[datetime | None, Query()] = None,
) -> ContactPage:
    where = _filter(email, user_id, identity, traits, seen_after, seen_before, created_after)
    rows = await profiles.list_contacts(session, after_id=after, limit=limit, where=where)
    items = [ContactOut.model_validate(r) for r in rows]
    return ContactPage(items=items, next_after=items[-1].id if len(items) == limit else None)


async def _missing(session: Session, contact_id: int) -> NotFound:
    """Not found, saying so plainly when the contact was erased."""
    when = await erasure.erased_at(session, contact_id)
    if when is not None:
        return NotFound(f"Contact {contact_id} was erased on {when.date().isoformat()}.")
    return NotFound(f"Contact {contact_id} does not exist.")


@router.get("/{contact_id}", response_model=ContactDetail, dependencies=[Reader],
            summary="Get one contact with its identities (a merged contact's id answers with the survivor)")
async def get_contact(contact_id: Id, session: Session) -> ContactDetail:
    contact = await profiles.get_contact(session, contact_id)
    if contact is None:
        raise await _missing(session, contact_id)
    detail = ContactDetail.model_validate(contact)
    detail.identities = [IdentityOut.model_validate(i) for i in await profiles.identities_of(session, contact.id)]
    return detail


@router.patch("/{contact_id}", response_model=ContactOut, dependencies=[Admin], summary="Update a contact")
async def update_contact(contact_id: Id, body: ContactPatch, session: Session) -> ContactOut:
    changes = body.model_dump(include={"email", "phone", "timezone"}, exclude_unset=True)
    contact = await profiles.update_contact(session, contact_id, changes=changes, traits=body.traits,
                                            unset_traits=body.unset_traits)
    if contact is None:
        raise await _missing(session, contact_id)
    return ContactOut.model_validate(contact)


@router.delete("/{contact_id}", status_code=204, dependencies=[Admin],
               summary="Erase a contact (right to erasure)",
               description="Removes personal data and identities everywhere (events, aggregates, segment "
                           "memberships, delivery details, the search index), forfeits a remaining points "
                           "balance to the program's breakage account and keeps the anonymous books balanced. "
                           "409 while a redemption order of the contact is in progress.")
async def erase_contact(contact_id: Id, session: Session, request: Request) -> Response:
    if await erasure.erase(session, contact_id, now=datetime.now(UTC)) is None:
        raise await _missing(session, contact_id)
    await _forget_in_search_index(request, contact_id)  # before commit: if it fails, nothing was erased
    return Response(status_code=204)


async def _forget_in_search_index(request: Request, contact_id: int) -> None:
    """The Elasticsearch segment index holds a copy of the contact's document; delete it too."""
    if not request.app.state.runtime.settings.elasticsearch_url:
        return
    index = segment_index(request)
    forget = getattr(index, "forget", None)
    if forget is None:
        return
    try:
        await forget([contact_id])
    except Exception as exc:  # the search index is down: erase nothing rather than half
        raise HTTPException(503, f"The search index could not delete contact {contact_id} ({exc}); "
                                 "nothing was erased, retry shortly.") from exc


@router.get("/{contact_id}/events", response_model=EventPage, dependencies=[Reader],
            summary="A contact's timeline, newest first by event time (keyset pagination)")
async def contact_events(
    contact_id: Id, session: Session,
    before: Annotated[str | None, Query(
        pattern=r"^\S+~\d+$", description="The `next_before` of the previous page: events older than it.",
        examples=["2026-11-25T09:30:00.120000Z~1042"])] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    cursor = _event_cursor(before) if before else None
    contact = await profiles.get_contact(session, contact_id)  # follows a merge to the surviving contact
    if contact is None:
        raise await _missing(session, contact_id)
    rows = await timeline.contact_events(session, contact.id, before=cursor, limit=limit)
    items = [EventOut(**r) for r in rows]
    last = items[-1] if len(items) == limit else None
    return EventPage(items=items, next_before=_event_cursor_of(last) if last else None)


def _event_cursor_of(event: EventOut) -> str:
    """UTC with a `Z`, so the cursor survives being pasted into a URL unencoded (a `+` would become a space)."""
    return f"{event.timestamp.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}~{event.id}"


def _event_cursor(value: str) -> tuple[datetime, int]:
    stamp, _, event_id = value.rpartition("~")
    try:
        at = datetime.fromisoformat(stamp)
        if not (event_id.isascii() and 0 < int(event_id) <= ID_MAX):
            raise ValueError(event_id)
    except ValueError:
        raise HTTPException(422, f"`before` must be a `next_before` value from a previous page, such as "
                                 f"2026-11-25T09:30:00.120000Z~1042; got {value[:60]!r}.") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)), int(event_id)
