"""Campaign definitions: create (with templates within their bounds and an audience that exists), get, list."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.confinement import Confinement, Exceeded, Limits, shared
from domain import templates
from domain.errors import DomainError, NotFound, TemplateProblem
from store.campaigns.models import Campaign
from store.contacts.profiles import existing_ids


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
                          html: str | None, contact_ids: Sequence[int]) -> Campaign:
    """A draft whose templates compile in the sandbox and whose audience exists, or a 422 naming what is wrong."""
    await check_templates(subject, body, html)
    ids = sorted(set(contact_ids))
    missing = sorted(set(ids) - await existing_ids(session, ids))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise DomainError(f"audience.contact_ids: {len(missing)} contact(s) do not exist: {shown}. Create them first.")
    campaign = Campaign(name=name, channel=channel, subject=subject, body=body, html=html,
                        audience={"contact_ids": ids})
    session.add(campaign)
    await session.flush()
    return campaign


def rendering() -> Confinement:
    """The worker processes templates are checked and rendered in, with the bounds domain/templates.py states."""
    return shared(Limits(cpu_seconds=templates.RENDER_CPU_SECONDS, memory_bytes=templates.RENDER_MEMORY_BYTES,
                         wall_seconds=templates.RENDER_WALL_SECONDS))


async def check_templates(subject: str, body: str, html: str | None) -> None:
    """Each part checked (templates.check: compiled, static bounds, a sample contact rendered) in a worker process,
    off the event loop; TemplateProblem names the part and the bound it passed."""
    parts = [("subject", subject, False), ("body", body, False), *([("html", html, True)] if html else [])]
    outcomes = await rendering().map(templates.check, [(source, field, is_html) for field, source, is_html in parts])
    for (field, _, _), outcome in zip(parts, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            raise outcome
        if isinstance(outcome, Exceeded):
            raise TemplateProblem(f"{field}: the template {outcome} rendering a sample contact.")
        if isinstance(outcome, BaseException):  # a check that broke is a refusal, never a 500
            raise TemplateProblem(f"{field}: the template could not be checked ({type(outcome).__name__}).")
