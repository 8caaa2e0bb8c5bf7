"""Segments: create (manual or rule), edit, delete, preview a rule, count, page members, add/remove/upload
members. Every membership change is also a `segment_entered` / `segment_exited` event on the contact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import Admin, Reader, Session, segment_index
from api.hygiene import ID_LIST_BODY, MB, body_limit
from api.params import ID_MAX, Cursor, Id
from api.schemas.segments import (
    CountOut,
    MemberOut,
    MemberPage,
    MembersChanged,
    MembersIn,
    PreviewIn,
    PreviewOut,
    RefreshOut,
    SampleContact,
    SegmentDeleted,
    SegmentIn,
    SegmentOut,
    SegmentPage,
    SegmentPatch,
)
from domain.errors import DomainError
from domain.hygiene import text_problem
from store.segments import definitions, edits, membership
from store.segments.models import Segment
from store.segments.preview import preview_rule
from store.segments.refresh import Changes, refresh_with_dependents
from workflows.segments.refresh import ensure_schedules

router = APIRouter(prefix="/v1/segments", tags=["segments"])
MAX_CSV_BYTES = 50 * MB


async def _out(session: Session, segment: Segment) -> SegmentOut:
    out = SegmentOut.model_validate(segment)
    out.member_count = await membership.member_count(session, segment.id)
    return out


@router.post("", response_model=SegmentOut, status_code=201, dependencies=[Admin],
             summary="Create a segment; a rule segment's membership is computed at once")
@body_limit(ID_LIST_BODY)
async def create_segment(body: SegmentIn, session: Session, request: Request) -> SegmentOut:
    if body.kind == "rule" and body.rule is None:
        raise DomainError("rule: a rule segment needs a `rule`")
    if body.kind == "manual" and body.rule is not None:
        raise DomainError("rule: a manual segment takes `contact_ids`, not a rule")
    if body.kind == "rule" and body.contact_ids:
        raise DomainError("contact_ids: only manual segments take explicit members")
    segment = await edits.create_with_members(session, name=body.name, kind=body.kind, rule=body.rule,
                                              description=body.description, contact_ids=body.contact_ids,
                                              now=datetime.now(UTC))
    if segment.kind == "rule":
        client = await request.app.state.temporal()
        if client is not None:  # rule segments are kept fresh by schedules; create them on first need
            await ensure_schedules(client)
    return await _out(session, segment)


@router.get("", response_model=SegmentPage, dependencies=[Reader], summary="List segments")
async def list_segments(session: Session, after: Cursor = 0,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> SegmentPage:
    rows = await definitions.list_segments(session, after_id=after, limit=limit)
    items = [await _out(session, s) for s in rows]
    return SegmentPage(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.post("/preview", response_model=PreviewOut, dependencies=[Reader],
             summary="Count and sample the contacts a rule matches, without saving it")
async def preview(body: PreviewIn, session: Session, request: Request) -> PreviewOut:
    found = await preview_rule(session, segment_index(request), body.rule, now=datetime.now(UTC), sample=body.sample)
    sample = [SampleContact(id=c.id, user_id=c.user_id, email=c.email, traits=c.traits) for c in found.sample]
    return PreviewOut(count=found.count, sample=sample, backend=found.backend)


@router.get("/{segment_id}", response_model=SegmentOut, dependencies=[Reader], summary="Get a segment")
async def get_segment(segment_id: Id, session: Session) -> SegmentOut:
    return await _out(session, await definitions.get_segment(session, segment_id))


@router.patch("/{segment_id}", response_model=SegmentOut, dependencies=[Admin],
              summary="Edit a segment's name, description or rule; a new rule re-computes membership at once",
              responses={404: {"description": "No such segment"},
                         422: {"description": "Invalid rule (named like at creation); nothing changed"}})
async def update_segment(segment_id: Id, body: SegmentPatch, session: Session) -> SegmentOut:
    fields = body.model_dump(exclude_unset=True)
    if not fields:
        raise DomainError("body: send at least one of name, description, rule")
    segment, _ = await edits.update_segment(session, segment_id, fields, datetime.now(UTC))
    return await _out(session, segment)


@router.delete("/{segment_id}", response_model=SegmentDeleted, dependencies=[Admin],
               summary="Delete a segment; its members exit. Refused (409) while another segment's rule names it",
               responses={404: {"description": "No such segment"},
                          409: {"description": "Other segments' rules name it; the detail lists them"}})
async def delete_segment(segment_id: Id, session: Session) -> SegmentDeleted:
    exited = await edits.delete_segment(session, segment_id, datetime.now(UTC))
    return SegmentDeleted(id=segment_id, exited=exited)


@router.get("/{segment_id}/count", response_model=CountOut, dependencies=[Reader],
            summary="How many contacts are members now (materialised membership)")
async def count(segment_id: Id, session: Session) -> CountOut:
    await definitions.get_segment(session, segment_id)
    return CountOut(segment_id=segment_id, count=await membership.member_count(session, segment_id))


@router.get("/{segment_id}/members", response_model=MemberPage, dependencies=[Reader],
            summary="Current members, by contact id (keyset pagination)")
async def members(
    segment_id: Id, session: Session,
    after: Annotated[Cursor, Query(description="Return members with contact id greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MemberPage:
    await definitions.get_segment(session, segment_id)
    page = await membership.members_page(session, segment_id, after=after, limit=limit)
    items = [MemberOut(contact_id=m.contact_id, entered_at=m.entered_at) for m in page]
    return MemberPage(items=items, next_after=items[-1].contact_id if len(items) == limit else None)


@router.post("/{segment_id}/members", response_model=MembersChanged, dependencies=[Admin],
             summary="Add contacts to a manual segment")
@body_limit(ID_LIST_BODY)
async def add_members(segment_id: Id, body: MembersIn, session: Session) -> MembersChanged:
    segment = await definitions.get_segment(session, segment_id)
    changed = await membership.add_members(session, segment, body.contact_ids, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed)


@router.post("/{segment_id}/members/remove", response_model=MembersChanged, dependencies=[Admin],
             summary="Remove contacts from a manual segment")
@body_limit(ID_LIST_BODY)
async def remove_members(segment_id: Id, body: MembersIn, session: Session) -> MembersChanged:
    segment = await definitions.get_segment(session, segment_id)
    changed = await membership.remove_members(session, segment, body.contact_ids, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed)


@router.post("/{segment_id}/members/csv", response_model=MembersChanged, dependencies=[Admin],
             summary="Upload a CSV (text/csv body, UTF-8, at most 50 MB) with a contact_id, user_id or email column",
             openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}})
@body_limit(MAX_CSV_BYTES, raw=True)
async def upload_members(segment_id: Id, request: Request, session: Session) -> MembersChanged:
    segment = await definitions.get_segment(session, segment_id)
    column, values = _csv_column(await request.body())
    changed, unknown = await membership.import_members(session, segment, column, values, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed, unknown=unknown[:100])


def _csv_column(raw: bytes) -> tuple[str, list[str]]:
    """The first of contact_id, user_id or email in a CSV's header, and its non-empty values: decoded strictly
    (text that is not UTF-8 is refused, not guessed) and holding only text and ids the database can compare."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DomainError(f"CSV is not UTF-8 text (byte {exc.start} is {raw[exc.start:exc.start + 1]!r}); "
                          "save it as UTF-8 and upload it again") from None
    if "\x00" in text:  # strict UTF-8 never decodes to a lone surrogate; a NUL it does
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise DomainError(f"CSV line {line} {text_problem(text)}")
    reader = csv.DictReader(io.StringIO(text))
    try:
        columns = [c for c in ("contact_id", "user_id", "email") if c in (reader.fieldnames or [])]
        if not columns:
            raise DomainError("CSV needs a header row with a contact_id, user_id or email column")
        column = columns[0]
        values = [row[column].strip() for row in reader if (row.get(column) or "").strip()]
    except csv.Error as exc:
        raise DomainError(f"CSV could not be read at line {reader.line_num}: {exc}") from None
    if column == "contact_id":
        bad = [v for v in values if not (v.isascii() and v.isdigit() and 0 < int(v) <= ID_MAX)]
        if bad:
            raise DomainError(f"contact_id must be a number from 1 to {ID_MAX}; got {bad[0][:40]!r}")
    return column, values


@router.post("/{segment_id}/refresh", response_model=RefreshOut, dependencies=[Admin],
             summary="Recompute a rule segment's membership now")
async def refresh(segment_id: Id, session: Session) -> RefreshOut:
    segment = await definitions.get_segment(session, segment_id)
    changes = await refresh_with_dependents(session, segment, datetime.now(UTC))
    own = changes.get(segment_id, Changes(0, 0))
    return RefreshOut(segment_id=segment_id, entered=own.entered, exited=own.exited)
