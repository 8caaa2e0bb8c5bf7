"""The in-app inbox, for the contact's app: list with the unread count, mark read, delete.

How an app calls it: never with an API key in the app itself. The app's own backend (which knows its signed-in
user's contact id) holds a `read` key for listing and an `admin` key for marking read and deleting, and proxies
these calls for its user; see docs/deliveries.md."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Admin, Reader, Session
from api.params import Id
from api.schemas.channels import InboxMessageOut, InboxOut, MarkedOut, MarkReadIn
from domain.errors import NotFound
from store.channels import inbox

router = APIRouter(prefix="/v1/contacts", tags=["inbox"])


@router.get("/{contact_id}/inbox", response_model=InboxOut, dependencies=[Reader],
            summary="A contact's in-app messages, newest first, with the unread count")
async def list_inbox(contact_id: Id, session: Session,
                     before: Annotated[Id | None, Query(description="Messages older than this message id.")] = None,
                     limit: Annotated[int, Query(ge=1, le=200)] = 50,
                     unread_only: Annotated[bool, Query(description="Only unread messages.")] = False) -> InboxOut:
    messages, unread = await inbox.listing(session, contact_id, now=datetime.now(UTC), before=before, limit=limit,
                                           unread_only=unread_only)
    return InboxOut(unread=unread, messages=[InboxMessageOut(**m.__dict__) for m in messages],
                    next_before=messages[-1].id if len(messages) == limit else None)


@router.post("/{contact_id}/inbox/read", response_model=MarkedOut, dependencies=[Admin],
             summary="Mark messages read (all of them when `ids` is null)")
async def mark_read(contact_id: Id, body: MarkReadIn, session: Session) -> MarkedOut:
    now = datetime.now(UTC)
    marked = await inbox.mark_read(session, contact_id, body.ids, now=now)
    _, unread = await inbox.listing(session, contact_id, now=now, before=None, limit=1, unread_only=True)
    return MarkedOut(marked=marked, unread=unread)


@router.delete("/{contact_id}/inbox/{message_id}", status_code=204, dependencies=[Admin],
               summary="Delete a message from the contact's inbox")
async def delete_message(contact_id: Id, message_id: Id, session: Session) -> None:
    if not await inbox.delete(session, contact_id, message_id, now=datetime.now(UTC)):
        raise NotFound(f"contact {contact_id} has no message {message_id} in its inbox")
