"""Missing template variables, counted over a whole audience in SQL: the launch's check (the audience as the snapshot
will take it) and each recurring occurrence's (its snapshot's queued recipients, variant by variant), and the
refusal of an occurrence whose recipients lack one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.confinement import Exceeded
from domain import campaigns_variables
from domain.campaigns import CampaignStatus, after_run, parts
from domain.campaigns_timing import Recurrence
from domain.campaigns_variables import Lookup, Path, Place, dotted, lookup
from domain.errors import TemplateProblem
from store.campaigns import lifecycle
from store.campaigns.definitions import get_campaign, rendering
from store.campaigns.lifecycle import Actor
from store.campaigns.models import Campaign
from store.campaigns.runs import get_run

EXAMPLES = 5  # contact ids named in the error


@dataclass(frozen=True)
class Need:
    field: str  # `email.subject`, `variants[b].sms.text`
    path: Path  # ("contact", "first_name")
    where: Lookup
    variant: str | None = None  # only this variant's recipients (a run's check); None: every recipient


@dataclass(frozen=True)
class Lacking:
    need: Need
    count: int
    of: int  # the recipients the need applies to
    examples: list[int]


def _fields(campaign: Campaign, variant: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(channel.field, template, html) of every part a recipient of `variant` ({}: none) is sent."""
    email = {"subject": variant.get("subject") or campaign.subject, "body": variant.get("body") or campaign.body,
             "html": variant.get("html") or campaign.html}
    return [(f"{channel}.{'.'.join(path)}", source, html)
            for channel in campaign.chain for path, source, html in parts(channel, email, campaign.content)]


async def needs(campaign: Campaign, *, per_variant: bool) -> list[Need]:
    """Each (part, path) a recipient would be rendered with unguarded, in part order. A variant's part is named
    `variants[name].…` when it differs from the campaign's. `per_variant`: each need applies to its variant's
    recipients only (a snapshot knows them); otherwise to everyone (an audience before the snapshot)."""
    base = {field: source for field, source, _ in _fields(campaign, {})}
    if per_variant:
        groups = [(str(v["name"]), v) for v in campaign.variants] or [(None, {})]
    else:
        groups = [(None, {}), *((None, v) for v in campaign.variants)]
    todo: dict[tuple[str, str | None], tuple[str, bool]] = {}  # (field, variant) -> (template, html)
    for variant, v in groups:
        for field, source, html in _fields(campaign, v):
            name = f"variants[{v['name']}].{field}" if v and source != base[field] else field
            todo.setdefault((name, variant), (source, html))
    items = list(todo.items())
    outcomes = await rendering().map(campaigns_variables.needed, [(source, html) for _, (source, html) in items])
    out: list[Need] = []
    for ((field, variant), _), outcome in zip(items, outcomes, strict=True):
        if isinstance(outcome, Exceeded | BaseException):  # checked at create; a template that breaks now is refused
            raise TemplateProblem(f"{field}: the template could not be checked ({outcome}).")
        out += [Need(field, path, lookup(path), variant) for path in outcome if lookup(path).place is not Place.ALWAYS]
    return out


_AUDIENCE = """
    FROM contacts c
    WHERE (c.id = ANY(:ids) OR c.id IN (SELECT contact_id FROM segment_members
                                         WHERE segment_id = ANY(:segs) AND exited_at IS NULL))
      AND c.id NOT IN (SELECT contact_id FROM segment_members WHERE segment_id = ANY(:excl) AND exited_at IS NULL)
"""
_SNAPSHOT = """
    FROM deliveries d JOIN contacts c ON c.id = d.contact_id
    WHERE d.run_id = :run AND d.status = 'queued'
"""


def _condition(need: Need, i: int, params: dict[str, Any]) -> str:
    """SQL true for a recipient the need applies to who lacks its path: `traits #> '{key,…}'` finds nothing (a key
    absent, or on the way an absent, null or non-object value, as a render finds it undefined; a JSON null at the
    end is a value, as in a render). A path defined for nobody is lacked by everyone."""
    conditions = []
    if need.variant is not None:
        params[f"v{i}"] = need.variant
        conditions.append(f"d.variant = :v{i}")
    if need.where.place is Place.TRAIT:
        params[f"p{i}"] = list(need.where.keys)
        conditions.append(f"c.traits #> CAST(:p{i} AS text[]) IS NULL")
    return " AND ".join(conditions) or "true"


def _applies(need: Need, i: int, params: dict[str, Any]) -> str:
    if need.variant is None:
        return "true"
    params[f"v{i}"] = need.variant
    return f"d.variant = :v{i}"


async def lacking(session: AsyncSession, needs_: Sequence[Need], source: str,
                  params: dict[str, Any]) -> list[Lacking]:
    """For every need, how many recipients of `source` (the audience or a run's snapshot) it applies to and how many
    of them lack its path, all in one scan; then a few example ids for each need that someone lacks (one indexed
    query each, stopping at EXAMPLES)."""
    if not needs_:
        return []
    params = dict(params)
    counts = [f"count(*) FILTER (WHERE {_condition(n, i, params)}) AS n{i}, "
              f"count(*) FILTER (WHERE {_applies(n, i, params)}) AS of{i}" for i, n in enumerate(needs_)]
    row = (await session.execute(text(f"SELECT {', '.join(counts)} {source}"), params)).one()
    out = []
    for i, need in enumerate(needs_):
        count = int(row._mapping[f"n{i}"])
        if count:
            ids = await session.scalars(text(
                f"SELECT c.id {source} AND {_condition(need, i, params)} ORDER BY c.id LIMIT {EXAMPLES}"), params)
            out.append(Lacking(need, count, int(row._mapping[f"of{i}"]), [int(x) for x in ids]))
    return out


def describe(found: Sequence[Lacking]) -> str:
    """The refusal: the first part and variable lacked (in part order), how many lack it, a few of them, the fix;
    then the others in brief."""
    first, rest = found[0], found[1:]
    variable = dotted(first.need.path)
    shown = ", ".join(map(str, first.examples)) + (", …" if first.count > len(first.examples) else "")
    whom = f"{first.count:,} of the {first.of:,} recipients" + (
        f" of variant {first.need.variant}" if first.need.variant else "")
    text_ = (f"{first.need.field} uses {variable}, which {whom} do not have (contact{'s' if first.count > 1 else ''} "
             f"{shown}). Give it a default ({{{{ {variable} | default('...') }}}}) or fill it in for them.")
    if rest:
        text_ += " Also: " + "; ".join(f"{f.need.field} uses {dotted(f.need.path)} ({f.count:,} lack it)"
                                       for f in rest[:5]) + ("; …" if len(rest) > 5 else "") + "."
    return text_


async def check_launch(session: AsyncSession, campaign_id: int) -> None:
    """Refuse a launch (422, TemplateProblem) whose templates use, unguarded (domain/campaigns_variables.py), a value
    some of the audience lack: counted in SQL over the whole audience, as the snapshot will take it (explicit ids and
    segment members minus exclusions), every variant's parts against every recipient."""
    campaign = await get_campaign(session, campaign_id)
    audience = campaign.audience
    found = await lacking(session, await needs(campaign, per_variant=False), _AUDIENCE, {
        "ids": [int(c) for c in audience.get("contact_ids", [])],
        "segs": [int(c) for c in audience.get("segment_ids", [])],
        "excl": [int(c) for c in audience.get("exclude_segment_ids", [])]})
    if found:
        raise TemplateProblem(describe(found))


async def check_run(session: AsyncSession, run_id: int) -> str | None:
    """A run's snapshot checked the same way, each variant's parts against its own queued recipients: None when
    nobody lacks anything, else why the run must not send. A run already refused gives its recorded reason."""
    run = await get_run(session, run_id)
    if run.error is not None:
        return run.error
    campaign = await get_campaign(session, run.campaign_id)
    try:
        wanted = await needs(campaign, per_variant=True)
    except TemplateProblem as exc:
        return str(exc)
    found = await lacking(session, wanted, _SNAPSHOT, {"run": run_id})
    return describe(found) if found else None


async def refuse_run(session: AsyncSession, run_id: int, reason: str) -> None:
    """Close a run that must not send: its queued deliveries `failed` with the reason, the run `failed` with it, and
    the campaign moved as after any run (a recurring one back to scheduled, completed after its last occurrence),
    the move's note naming the reason. Idempotent."""
    run = await get_run(session, run_id)
    campaign = await get_campaign(session, run.campaign_id, lock=True)
    if run.finished_at is not None:
        return
    await session.execute(text("""
        UPDATE deliveries SET status = 'failed', error = :reason WHERE run_id = :run AND status = 'queued'
    """), {"run": run_id, "reason": f"not sent: {reason}"})
    now = datetime.now().astimezone()
    run.status, run.error, run.finished_at = "failed", reason, now
    recurrence = Recurrence.from_json(campaign.recurrence) if campaign.recurrence else None
    more = recurrence is not None and recurrence.next_after(run.scheduled_at or now) is not None
    target = after_run(CampaignStatus(campaign.status), cancelled=False, recurring=recurrence is not None, more=more)
    if target is not None:
        await lifecycle.record(session, campaign, target, Actor.system(f"run {run.number}"),
                               f"run {run.number} not sent: {reason}"[:2000])
