"""Journeys as the marketer edits them: drafts validated on save, immutable published versions, the lifecycle
(draft → live ⇄ paused → archived), per-node counts and a contact's journey history."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.confinement import Confinement, Exceeded, Limits, shared
from domain import templates
from domain.errors import DomainError, InvalidTransition, NotFound, TemplateProblem
from domain.journeys import content
from domain.journeys.graph import Send, parse
from store.journeys import rewards, templating

LIVE_STATUSES = ("ready", "sleeping", "waiting")
ARCHIVE_AT_ONCE = 10_000  # contacts an archive ends in its own transaction; the journey's workflow ends the rest
MOVES = {  # status → the statuses an action may take it to
    "publish": ("draft", "live", "paused"),
    "pause": ("live",),
    "resume": ("paused",),
    "archive": ("draft", "live", "paused"),
}


@dataclass
class Version:
    version: int
    published_at: datetime
    graph: dict[str, Any]


@dataclass
class Journey:
    id: int
    name: str
    status: str
    draft: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime
    versions: list[Version] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # node → outcome → contacts (all versions)
    waiting: dict[str, int] = field(default_factory=dict)  # node → contacts there now


def consumer(journey_id: int) -> str:
    """The journey's cursor name in `event_cursors`."""
    return f"journey:{journey_id}"


def rendering() -> Confinement:
    """The worker processes send templates are checked and rendered in, with the bounds domain/templates.py states
    (the same shared pool campaigns use)."""
    return shared(Limits(cpu_seconds=templates.RENDER_CPU_SECONDS, memory_bytes=templates.RENDER_MEMORY_BYTES,
                         wall_seconds=templates.RENDER_WALL_SECONDS))


async def validate(session: AsyncSession, graph: dict[str, Any]) -> None:
    """The graph's rules (domain.journeys.graph.parse), the coupon templates its grants name (they exist), then
    every send template checked in the confined workers (syntax, nothing private, bounds;
    domain.journeys.content.check): a 422 naming the node (and the field)."""
    parsed = parse(graph)
    await rewards.check(session, parsed)
    checked = [(content.field_name(node.id, part), part) for node in parsed.nodes.values() if isinstance(node, Send)
               for part in content.parts(node.content)]
    if not checked:
        return
    outcomes = await rendering().map(templating.check, [(p[2], name, p[3]) for name, p in checked])
    for (name, _), outcome in zip(checked, outcomes, strict=True):
        if isinstance(outcome, DomainError):
            raise outcome
        if isinstance(outcome, Exceeded):
            raise TemplateProblem(f"{name}: the template {outcome} rendering a sample contact.")
        if isinstance(outcome, BaseException):  # a check that broke is a refusal, never a 500
            raise TemplateProblem(f"{name}: the template could not be checked ({type(outcome).__name__}).")


def _journey(row: Any) -> Journey:
    return Journey(row.id, row.name, row.status, row.draft, row.version, row.created_at, row.updated_at)


async def create_journey(session: AsyncSession, name: str, graph: dict[str, Any]) -> Journey:
    await validate(session, graph)
    row = (await session.execute(text("""
        INSERT INTO journeys (name, draft) VALUES (:name, CAST(:g AS jsonb)) RETURNING *
    """), {"name": name, "g": orjson.dumps(graph).decode()})).one()
    return _journey(row)


async def _locked(session: AsyncSession, journey_id: int) -> Any:
    row = (await session.execute(text("SELECT * FROM journeys WHERE id = :id FOR UPDATE"), {"id": journey_id})).first()
    if row is None:
        raise NotFound(f"journey {journey_id} not found")
    return row


async def update_draft(session: AsyncSession, journey_id: int, name: str, graph: dict[str, Any]) -> Journey:
    """Replace the draft (validated); published versions and the contacts on them are not touched."""
    await validate(session, graph)
    row = await _locked(session, journey_id)
    if row.status == "archived":
        raise InvalidTransition(f"journey {journey_id} is archived; create a new journey")
    row = (await session.execute(text("""
        UPDATE journeys SET name = :name, draft = CAST(:g AS jsonb), updated_at = now() WHERE id = :id RETURNING *
    """), {"id": journey_id, "name": name, "g": orjson.dumps(graph).decode()})).one()
    return _journey(row)


async def publish(session: AsyncSession, journey_id: int) -> Journey:
    """The draft becomes a new immutable version; new entries take it, running contacts stay on theirs. The
    first publish starts the journey's event cursor at the end of the outbox: history before it enters nobody."""
    row = await _locked(session, journey_id)
    _allowed(row, "publish")
    await validate(session, row.draft)  # drafts are validated on save; a rule added since then is checked here
    version = row.version + 1
    await session.execute(text("""
        INSERT INTO journey_versions (journey_id, version, graph) VALUES (:id, :v, CAST(:g AS jsonb))
    """), {"id": journey_id, "v": version, "g": orjson.dumps(row.draft).decode()})
    await session.execute(text("""
        INSERT INTO event_cursors (consumer, xid, outbox_id)
        SELECT :c, coalesce(max(xid), '0'::xid8), coalesce(max(id), 0) FROM event_outbox
        WHERE xid = (SELECT max(xid) FROM event_outbox)
        ON CONFLICT (consumer) DO NOTHING
    """), {"c": consumer(journey_id)})
    status = "live" if row.status == "draft" else row.status
    updated = (await session.execute(text("""
        UPDATE journeys SET version = :v, status = :s, updated_at = now() WHERE id = :id RETURNING *
    """), {"id": journey_id, "v": version, "s": status})).one()
    return _journey(updated)


def _allowed(row: Any, action: str) -> None:
    if row.status not in MOVES[action]:
        raise InvalidTransition(f"journey {row.id} is {row.status}; cannot {action} it")


async def change_status(session: AsyncSession, journey_id: int, action: str) -> Journey:
    """pause, resume or archive. Pausing leaves every contact where it is (the runtime moves nobody until resume);
    archiving also ends contacts still in the journey (`end_all`): up to `ARCHIVE_AT_ONCE` in the same transaction,
    the rest in batches by the journey's workflow (nothing moves or enters once the archive commits)."""
    row = await _locked(session, journey_id)
    _allowed(row, action)
    if action == "resume" and row.version == 0:
        raise InvalidTransition(f"journey {journey_id} was never published")
    status = {"pause": "paused", "resume": "live", "archive": "archived"}[action]
    updated = (await session.execute(text("""
        UPDATE journeys SET status = :s, updated_at = now() WHERE id = :id RETURNING *
    """), {"id": journey_id, "s": status})).one()
    if action == "archive":
        await end_all(session, journey_id, "archived", limit=ARCHIVE_AT_ONCE)
    return _journey(updated)


async def end_all(session: AsyncSession, journey_id: int, reason: str, *, limit: int | None = None) -> int:
    """Every contact still in the journey (ready, sleeping, waiting) — or the first `limit` of them — exits where it
    stands, in one statement: its state row `exited` with `exit_reason`, a history row (`exited`, `reason`) at its
    node, and the node's `exited` count. A run in progress cannot slip past it: the consumer reads the journey's
    status under a share lock (an archive's transaction holds the row for update), and rows a move has locked are
    waited for and then ended where the move left them. Returns how many contacts it ended."""
    return int(await session.scalar(text("""
        WITH chosen AS (
            SELECT contact_id, entry FROM journey_states
            WHERE journey_id = :j AND status IN ('ready', 'sleeping', 'waiting')
            ORDER BY contact_id, entry LIMIT :n FOR UPDATE
        ), ended AS (
            UPDATE journey_states s SET status = 'exited', exit_reason = :why, wake_at = NULL, waiting_event = NULL,
                                        updated_at = now()
            FROM chosen c
            WHERE s.journey_id = :j AND s.contact_id = c.contact_id AND s.entry = c.entry
              AND s.status IN ('ready', 'sleeping', 'waiting')
            RETURNING s.contact_id, s.version, s.entry, s.node
        ), history AS (
            INSERT INTO journey_history (contact_id, journey_id, version, entry, node, outcome, reason, at)
            SELECT contact_id, :j, version, entry, node, 'exited', :why, now() FROM ended
        ), counted AS (
            INSERT INTO journey_counts AS k (journey_id, version, node, outcome, n)
            SELECT :j, version, node, 'exited', count(*) FROM ended GROUP BY version, node ORDER BY version, node
            ON CONFLICT (journey_id, version, node, outcome) DO UPDATE SET n = k.n + excluded.n
        )
        SELECT count(*) FROM ended
    """), {"j": journey_id, "why": reason, "n": limit}) or 0)


async def get_journey(session: AsyncSession, journey_id: int) -> Journey:
    row = (await session.execute(text("SELECT * FROM journeys WHERE id = :id"), {"id": journey_id})).first()
    if row is None:
        raise NotFound(f"journey {journey_id} not found")
    journey = _journey(row)
    journey.versions = [Version(r.version, r.published_at, r.graph) for r in await session.execute(text("""
        SELECT version, published_at, graph FROM journey_versions WHERE journey_id = :id ORDER BY version
    """), {"id": journey_id})]
    for r in await session.execute(text("""
        SELECT node, outcome, sum(n)::bigint AS n FROM journey_counts WHERE journey_id = :id GROUP BY node, outcome
    """), {"id": journey_id}):
        journey.counts.setdefault(r.node, {})[r.outcome] = int(r.n)
    journey.waiting = {r.node: int(r.n) for r in await session.execute(text("""
        SELECT node, count(*) AS n FROM journey_states
        WHERE journey_id = :id AND status IN ('sleeping', 'waiting') GROUP BY node
    """), {"id": journey_id})}
    return journey


async def list_journeys(session: AsyncSession, *, after: int, limit: int) -> list[Journey]:
    return [_journey(r) for r in await session.execute(text("""
        SELECT * FROM journeys WHERE id > :after ORDER BY id LIMIT :n
    """), {"after": after, "n": limit})]


async def newest_journeys(session: AsyncSession, *, limit: int) -> list[Journey]:
    """The most recently created journeys, archived last."""
    return [_journey(r) for r in await session.execute(text("""
        SELECT * FROM journeys ORDER BY status = 'archived', id DESC LIMIT :n
    """), {"n": limit})]


async def active_journeys(session: AsyncSession) -> list[Journey]:
    return [_journey(r) for r in await session.execute(text(
        "SELECT * FROM journeys WHERE status IN ('live', 'paused') ORDER BY id"))]


@dataclass(frozen=True)
class Step:
    journey_id: int
    version: int
    entry: int
    node: str
    outcome: str
    at: datetime
    reason: str | None = None  # a forced exit: archived, merged


@dataclass(frozen=True)
class ContactJourney:
    journey_id: int
    name: str
    entry: int
    version: int
    node: str
    status: str
    entered_at: datetime
    wake_at: datetime | None
    steps: list[Step]
    exit_reason: str | None = None


async def contact_history(session: AsyncSession, contact_id: int, *, limit: int = 50) -> list[ContactJourney]:
    """The contact's journey entries, newest first, each with its node transitions in order."""
    entries = list(await session.execute(text("""
        SELECT s.journey_id, j.name, s.entry, s.version, s.node, s.status, s.entered_at, s.wake_at, s.exit_reason
        FROM journey_states s JOIN journeys j ON j.id = s.journey_id
        WHERE s.contact_id = :c ORDER BY s.entered_at DESC, s.journey_id, s.entry DESC LIMIT :n
    """), {"c": contact_id, "n": limit}))
    steps: dict[tuple[int, int], list[Step]] = {}
    for r in await session.execute(text("""
        SELECT journey_id, version, entry, node, outcome, at, reason FROM journey_history
        WHERE contact_id = :c AND journey_id = ANY(:j) ORDER BY id
    """), {"c": contact_id, "j": sorted({e.journey_id for e in entries})}):
        steps.setdefault((r.journey_id, r.entry), []).append(Step(r.journey_id, r.version, r.entry, r.node,
                                                                   r.outcome, r.at, r.reason))
    return [ContactJourney(e.journey_id, e.name, e.entry, e.version, e.node, e.status, e.entered_at, e.wake_at,
                           steps.get((e.journey_id, e.entry), []), e.exit_reason) for e in entries]
