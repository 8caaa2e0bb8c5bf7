"""Segments: create (manual or rule), edit, delete, preview a rule, count, page members, add/remove/upload
members. Every membership change is also a `segment_entered` / `segment_exited` event on the contact."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy import text

from api.deps import Admin, Reader, Session
from api.schemas.segments import (
    CountOut, MemberOut, MemberPage, MembersChanged, MembersIn, PreviewIn, PreviewOut, RefreshOut, SampleContact,
    SegmentDeleted, SegmentIn, SegmentOut, SegmentPage, SegmentPatch,
)
from domain.errors import DomainError
from store.segments import membership as store
from store.segments import edits as segments_edit
from workflows.segments.refresh import ensure_schedules

router = APIRouter(prefix="/v1/segments", tags=["segments"])
MAX_CSV_BYTES = 50 * 1024 * 1024


def segment_index(request: Request) -> store.SegmentIndex:
    """Elasticsearch when ELASTICSEARCH_URL is set, else Postgres; one per app."""
    index = getattr(request.app.state, "segment_index", None)
    if index is None:
        url = request.app.state.runtime.settings.elasticsearch_url
        if url:
            from store.segments.es import ElasticsearchSegmentIndex

            index = ElasticsearchSegmentIndex(url)
        else:
            index = store.PostgresSegmentIndex()
        request.app.state.segment_index = index
    return index  # type: ignore[no-any-return]


async def _out(session: Session, segment: store.Segment) -> SegmentOut:
    out = SegmentOut.model_validate(segment)
    out.member_count = await store.member_count(session, segment.id)
    return out


@router.post("", response_model=SegmentOut, status_code=201, dependencies=[Admin],
             summary="Create a segment; a rule segment's membership is computed at once")
async def create_segment(body: SegmentIn, session: Session, request: Request) -> SegmentOut:
    if body.kind == "rule" and body.rule is None:
        raise DomainError("rule: a rule segment needs a `rule`")
    if body.kind == "manual" and body.rule is not None:
        raise DomainError("rule: a manual segment takes `contact_ids`, not a rule")
    if body.kind == "rule" and body.contact_ids:
        raise DomainError("contact_ids: only manual segments take explicit members")
    segment = await store.create_segment(session, name=body.name, kind=body.kind, rule=body.rule,
                                         description=body.description)
    now = datetime.now(UTC)
    if segment.kind == "rule":
        await store.refresh_segment(session, segment, now)
        client = await request.app.state.temporal()
        if client is not None:  # rule segments are kept fresh by schedules; create them on first need
            await ensure_schedules(client)
    elif body.contact_ids:
        await store.add_members(session, segment, body.contact_ids, now)
    return await _out(session, segment)


@router.get("", response_model=SegmentPage, dependencies=[Reader], summary="List segments")
async def list_segments(session: Session, after: Annotated[int, Query(ge=0)] = 0,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100) -> SegmentPage:
    rows = await store.list_segments(session, after_id=after, limit=limit)
    items = [await _out(session, s) for s in rows]
    return SegmentPage(items=items, next_after=items[-1].id if len(items) == limit else None)


@router.post("/preview", response_model=PreviewOut, dependencies=[Reader],
             summary="Count and sample the contacts a rule matches, without saving it")
async def preview(body: PreviewIn, session: Session, request: Request) -> PreviewOut:
    node = await store.validate_rule(session, body.rule)
    index = segment_index(request)
    now = datetime.now(UTC)
    count = await index.count(session, node, now)
    ids = await index.page(session, node, now, after=0, limit=body.sample) if body.sample else []
    rows = await session.execute(text("SELECT id, user_id, email, traits FROM contacts WHERE id = ANY(:ids) ORDER BY id"),
                                 {"ids": ids})
    sample = [SampleContact(id=r.id, user_id=r.user_id, email=r.email, traits=r.traits) for r in rows]
    return PreviewOut(count=count, sample=sample, backend=index.name)


@router.get("/{segment_id}", response_model=SegmentOut, dependencies=[Reader], summary="Get a segment")
async def get_segment(segment_id: int, session: Session) -> SegmentOut:
    return await _out(session, await store.get_segment(session, segment_id))


@router.patch("/{segment_id}", response_model=SegmentOut, dependencies=[Admin],
              summary="Edit a segment's name, description or rule; a new rule re-computes membership at once",
              responses={404: {"description": "No such segment"},
                         422: {"description": "Invalid rule (named like at creation); nothing changed"}})
async def update_segment(segment_id: int, body: SegmentPatch, session: Session) -> SegmentOut:
    fields = body.model_dump(exclude_unset=True)
    if not fields:
        raise DomainError("body: send at least one of name, description, rule")
    segment, _ = await segments_edit.update_segment(session, segment_id, fields, datetime.now(UTC))
    return await _out(session, segment)


@router.delete("/{segment_id}", response_model=SegmentDeleted, dependencies=[Admin],
               summary="Delete a segment; its members exit. Refused (409) while another segment's rule names it",
               responses={404: {"description": "No such segment"},
                          409: {"description": "Other segments' rules name it; the detail lists them"}})
async def delete_segment(segment_id: int, session: Session) -> SegmentDeleted:
    exited = await segments_edit.delete_segment(session, segment_id, datetime.now(UTC))
    return SegmentDeleted(id=segment_id, exited=exited)


@router.get("/{segment_id}/count", response_model=CountOut, dependencies=[Reader],
            summary="How many contacts are members now (materialised membership)")
async def count(segment_id: int, session: Session) -> CountOut:
    await store.get_segment(session, segment_id)
    return CountOut(segment_id=segment_id, count=await store.member_count(session, segment_id))


@router.get("/{segment_id}/members", response_model=MemberPage, dependencies=[Reader],
            summary="Current members, by contact id (keyset pagination)")
async def members(
    segment_id: int, session: Session,
    after: Annotated[int, Query(ge=0, description="Return members with contact id greater than this.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MemberPage:
    await store.get_segment(session, segment_id)
    page = await store.members_page(session, segment_id, after=after, limit=limit)
    items = [MemberOut(contact_id=m.contact_id, entered_at=m.entered_at) for m in page]
    return MemberPage(items=items, next_after=items[-1].contact_id if len(items) == limit else None)


@router.post("/{segment_id}/members", response_model=MembersChanged, dependencies=[Admin],
             summary="Add contacts to a manual segment")
async def add_members(segment_id: int, body: MembersIn, session: Session) -> MembersChanged:
    segment = await store.get_segment(session, segment_id)
    changed = await store.add_members(session, segment, body.contact_ids, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed)


@router.post("/{segment_id}/members/remove", response_model=MembersChanged, dependencies=[Admin],
             summary="Remove contacts from a manual segment")
async def remove_members(segment_id: int, body: MembersIn, session: Session) -> MembersChanged:
    segment = await store.get_segment(session, segment_id)
    changed = await store.remove_members(session, segment, body.contact_ids, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed)


@router.post("/{segment_id}/members/csv", response_model=MembersChanged, dependencies=[Admin],
             summary="Upload a CSV (text/csv body) with a contact_id, user_id or email column")
async def upload_members(segment_id: int, request: Request, session: Session) -> MembersChanged:
    segment = await store.get_segment(session, segment_id)
    raw = await request.body()
    if len(raw) > MAX_CSV_BYTES:
        raise DomainError(f"CSV is larger than {MAX_CSV_BYTES // 1024 // 1024} MB; split it")
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8-sig")))
    columns = [c for c in ("contact_id", "user_id", "email") if c in (reader.fieldnames or [])]
    if not columns:
        raise DomainError("CSV needs a header row with a contact_id, user_id or email column")
    column = columns[0]
    values = [row[column].strip() for row in reader if (row.get(column) or "").strip()]
    if column == "contact_id":
        bad = [v for v in values if not v.isdigit()]
        if bad:
            raise DomainError(f"contact_id must be a number; got {bad[0]!r}")
        ids = await store.resolve_contacts(session, ids=[int(v) for v in values])
        unknown = [v for v in values if int(v) not in set(ids)]
    elif column == "user_id":
        ids = await store.resolve_contacts(session, user_ids=values)
        found = set((await session.scalars(text("SELECT user_id FROM contacts WHERE id = ANY(:ids)"), {"ids": ids})).all())
        unknown = [v for v in values if v not in found]
    else:
        ids = await store.resolve_contacts(session, emails=values)
        found = set((await session.scalars(text("SELECT lower(email) FROM contacts WHERE id = ANY(:ids)"),
                                           {"ids": ids})).all())
        unknown = [v for v in values if v.lower() not in found]
    changed = await store.add_members(session, segment, ids, datetime.now(UTC))
    return MembersChanged(segment_id=segment_id, changed=changed, unknown=unknown[:100])


@router.post("/{segment_id}/refresh", response_model=RefreshOut, dependencies=[Admin],
             summary="Recompute a rule segment's membership now")
async def refresh(segment_id: int, session: Session) -> RefreshOut:
    segment = await store.get_segment(session, segment_id)
    changes = await store.refresh_with_dependents(session, segment, datetime.now(UTC))
    own = changes.get(segment_id, store.Changes(0, 0))
    return RefreshOut(segment_id=segment_id, entered=own.entered, exited=own.exited)
