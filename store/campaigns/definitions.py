"""Campaign definitions: create (with templates within their bounds and an audience that exists), get, list."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from core.confinement import Confinement, Exceeded, Limits, shared
from domain import templates
from domain.campaigns import Variant, assemble, parts, thresholds
from domain.campaigns_timing import Recurrence, known_zone, parse_local_time
from domain.errors import DomainError, NotFound, TemplateProblem
from store.campaigns.models import Campaign
from store.contacts.profiles import existing_ids
from store.segments.models import Segment


async def get_campaign(session: AsyncSession, campaign_id: int, *, lock: bool = False) -> Campaign:
    stmt = select(Campaign).where(Campaign.id == campaign_id)
    campaign = await session.scalar(stmt.with_for_update() if lock else stmt)
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} does not exist.")
    return campaign


async def list_campaigns(session: AsyncSession, *, after_id: int = 0, limit: int = 100) -> Sequence[Campaign]:
    rows = await session.scalars(select(Campaign).where(Campaign.id > after_id).order_by(Campaign.id).limit(limit))
    return rows.all()


async def create_campaign(session: AsyncSession, *, name: str, channel: str, subject: str, body: str,
                          html: str | None, contact_ids: Sequence[int], segment_ids: Sequence[int] = (),
                          exclude_segment_ids: Sequence[int] = (), variants: Sequence[dict[str, Any]] = (),
                          holdout_bp: int = 0, incentive: dict[str, Any] | None = None,
                          approval_required: bool = False, conversion_event: str | None = None,
                          created_by_key_id: int | None = None, created_by: str | None = None,
                          chain: Sequence[str] = ("email",), content: dict[str, Any] | None = None,
                          max_per_second: int | None = None, recurrence: Recurrence | None = None,
                          local_time: str | None = None, timezone: str = "UTC") -> Campaign:
    """A draft whose templates (and each variant's) compile in the sandbox and whose audience exists, or a 422
    naming what is wrong."""
    await check_templates(subject, body, html)
    for i, v in enumerate(variants):
        await check_templates(v.get("subject") or subject, v.get("body") or body, v.get("html") or html,
                              prefix=f"variants[{i}].")
    thresholds([Variant(str(v["name"]), int(v.get("weight", 1))) for v in variants], holdout_bp)
    timing = check_timing(recurrence, local_time, timezone)
    content = content or {}
    for channel in chain:
        if channel != "email":
            await check_parts([(f"content.{channel}.{'.'.join(path)}", source, html)
                               for path, source, html in parts(channel, {}, content)])
    ids = sorted(set(contact_ids))
    missing = sorted(set(ids) - await existing_ids(session, ids))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DomainError(f"audience.contact_ids: {len(missing)} contact(s) do not exist: {shown}. Create them first.")
    for field, wanted in (("segment_ids", segment_ids), ("exclude_segment_ids", exclude_segment_ids)):
        found = set((await session.scalars(select(Segment.id).where(Segment.id.in_(list(wanted))))).all())
        if unknown := sorted(set(wanted) - found):
            raise DomainError(f"audience.{field}: segment(s) {', '.join(map(str, unknown))} do not exist.")
    campaign = Campaign(name=name, channel=chain[0], chain=list(chain), content=content, subject=subject, body=body,
                        html=html,
                        audience={"contact_ids": ids, "segment_ids": sorted(set(segment_ids)),
                                  "exclude_segment_ids": sorted(set(exclude_segment_ids))},
                        variants=list(variants), holdout_bp=holdout_bp, incentive=incentive,
                        approval_required=approval_required, conversion_event=conversion_event,
                        created_by_key_id=created_by_key_id, created_by=created_by, max_per_second=max_per_second,
                        recurrence=timing.to_json() if timing else None, local_time=local_time, timezone=timezone)
    session.add(campaign)
    await session.flush()
    return campaign


def check_timing(recurrence: Recurrence | None, local_time: str | None, timezone: str) -> Recurrence | None:
    """The recurrence normalised, or a 422 naming the field (`recurrence.cron`, `local_time`, `timezone`)."""
    try:
        known_zone(timezone)
    except DomainError as exc:
        raise DomainError(f"timezone: {exc}") from None
    if local_time is not None:
        try:
            parse_local_time(local_time)
        except DomainError as exc:
            raise DomainError(f"local_time: {exc}") from None
    return recurrence.check() if recurrence is not None else None


async def set_timing(session: AsyncSession, campaign_id: int, *, local_time: str | None,
                     timezone: str | None) -> Campaign:
    """A launch's local-time settings stored on the campaign (locked) before its run reads them; a 422 names the
    field."""
    campaign = await get_campaign(session, campaign_id, lock=True)
    if local_time is not None or timezone is not None:
        check_timing(None, local_time, timezone or campaign.timezone)
        campaign.local_time = local_time if local_time is not None else campaign.local_time
        campaign.timezone = timezone or campaign.timezone
        await session.flush()
    return campaign


def rendering() -> Confinement:
    """The worker processes templates are checked and rendered in, with the bounds domain/templates.py states."""
    return shared(Limits(cpu_seconds=templates.RENDER_CPU_SECONDS, memory_bytes=templates.RENDER_MEMORY_BYTES,
                         wall_seconds=templates.RENDER_WALL_SECONDS))


async def check_templates(subject: str, body: str, html: str | None, *, prefix: str = "") -> None:
    """Each part checked (templates.check: compiled, static bounds, a sample contact rendered) in a worker process,
    off the event loop; TemplateProblem names the part and the bound it passed."""
    await check_parts([(prefix + "subject", subject, False), (prefix + "body", body, False),
                       *([(prefix + "html", html, True)] if html else [])])


async def check_parts(checked: Sequence[tuple[str, str, bool]]) -> None:
    """(field, template, html) each checked in the confined workers; the first problem raised, naming its field."""
    outcomes = await rendering().map(templates.check, [(source, field, is_html) for field, source, is_html in checked])
    for (field, _, _), outcome in zip(checked, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            raise outcome
        if isinstance(outcome, Exceeded):
            raise TemplateProblem(f"{field}: the template {outcome} rendering a sample contact.")
        if isinstance(outcome, BaseException):  # a check that broke is a refusal, never a 500
            raise TemplateProblem(f"{field}: the template could not be checked ({type(outcome).__name__}).")


async def preview(session: AsyncSession, campaign_id: int, contact_id: int, channel: str,
                  variant: str | None) -> dict[str, Any]:
    """One channel's content rendered for one contact, as the send would render it (same confined workers); a
    template problem is a 422 naming the part."""
    campaign = await get_campaign(session, campaign_id)
    if channel not in campaign.chain:
        raise DomainError(f"channel: {channel} is not in this campaign's chain ({', '.join(campaign.chain)}).")
    row = (await session.execute(text(
        "SELECT id, user_id, email, phone, timezone, traits FROM contacts WHERE id = :id"), {"id": contact_id}
    )).one_or_none()
    if row is None:
        raise NotFound(f"Contact {contact_id} does not exist.")
    chosen = next((v for v in campaign.variants if v.get("name") == variant), None)
    if variant is not None and chosen is None:
        raise DomainError(f"variant: this campaign has no variant {variant!r}.")
    v = chosen or {}
    email = {"subject": v.get("subject") or campaign.subject, "body": v.get("body") or campaign.body,
             "html": v.get("html") or campaign.html}
    context = templates.contact_context(dict(row._mapping), {"id": campaign.id, "name": campaign.name,
                                                             "variant": variant})
    todo = parts(channel, email, campaign.content)
    missing = await rendering().map(templates.missing_variables, [(source, context, html) for _, source, html in todo])
    for (path, _, _), outcome in zip(todo, missing, strict=True):
        if isinstance(outcome, list) and outcome:
            raise TemplateProblem(f"{channel}.{'.'.join(path)} uses {', '.join(outcome)}, which contact {contact_id} "
                                  f"does not have. Give it a default ({{{{ {outcome[0]} | default('...') }}}}).")
    outcomes = await rendering().map(templates.render, [(source, context, html) for _, source, html in todo])
    for (path, _, _), outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            raise TemplateProblem(f"{channel}.{'.'.join(path)}: the template {outcome}")
    return assemble(channel, campaign.content, [(path, str(o)) for (path, _, _), o in zip(todo, outcomes, strict=True)])
