"""The journey runtime's set-based moves, each one transaction the activity owns:

- `consume`: the journey's new events from the ingest outbox (its own cursor, `journey:{id}`). Events matching
  the trigger enter contacts (re-entry policy applied); events are joined — not broadcast — to the journey's
  live states of the same contacts waiting for that event name, or converting on the goal. Contacts that enter or
  are resumed move on through the graph at once. The state moves, their effects and the cursor commit together:
  a crash replays the batch from the old cursor, as if it never ran.
- `enter_by_date`: a date-trait trigger's contacts whose day it is, in one statement, at most hourly.
- `advance_due`: up to ~1000 due states (wake_at ≤ now, locked SKIP LOCKED) moved through consecutive
  non-waiting nodes by the domain interpreter.

Effects are written in the same transaction under `journey:{journey}:{version}:{contact}:{entry}:{node}`: trait
updates, ledger credits, delivery plans. The caller then sends the returned steps through the delivery service
(registered already — with a delivery policy, claimed too — so a crash before sending leaves them to the sweeper, and
a retry finds them and sends nothing twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from core.confinement import Confinement
from domain.channels.policy import DeliveryPolicy
from domain.journeys import content
from domain.journeys.graph import Graph, parse
from domain.journeys.interpreter import (
    ContactView,
    Status,
    advance,
    converts,
    key,
    may_enter,
    on_event,
    triggered,
)
from store.channels import records
from store.channels.arrays import ints, texts, times
from store.channels.records import Step
from store.events.outbox import advance_cursor, read_new_events
from store.journeys import rewards, templating
from store.journeys.definitions import consumer

LIVE = ("ready", "sleeping", "waiting")
LOCK = "SELECT pg_advisory_xact_lock(hashtext('nudge.journey'), CAST(CAST(:j AS bigint) % 2147483648 AS integer))"


@dataclass
class State:
    contact_id: int
    entry: int
    version: int
    node: str
    status: str
    wake_at: datetime | None
    waiting_event: str | None
    event: dict[str, Any]
    entered_at: datetime
    changed: bool = False
    new: bool = False  # entered in this move: no row yet


@dataclass
class Advanced:
    contacts: int = 0
    sends: list[Step] = field(default_factory=list)
    claimed: records.Claimed | None = None  # with a policy: the sends' plans, registered and claimed in the move
    updates: int = 0
    grants: int = 0
    refused: int = 0
    render_failures: list[tuple[int, str, str]] = field(default_factory=list)  # (contact, node, why)
    refusals: list[tuple[int, str, str]] = field(default_factory=list)  # grants refused: (contact, node, why)


@dataclass
class Consumed:
    events: int = 0
    entered: int = 0
    resumed: int = 0
    converted: int = 0
    moved: Advanced = field(default_factory=Advanced)  # entered and resumed contacts, moved on at once


_graphs: dict[tuple[int, int], Graph] = {}  # versions never change: parse each once per process


async def graphs(session: AsyncSession, journey_id: int, versions: Iterable[int]) -> dict[int, Graph]:
    wanted = sorted(set(versions) - {v for (j, v) in _graphs if j == journey_id})
    if wanted:
        for r in await session.execute(text("""
            SELECT version, graph FROM journey_versions WHERE journey_id = :j AND version = ANY(:v)
        """), {"j": journey_id, "v": wanted}):
            _graphs[(journey_id, r.version)] = parse(r.graph)
    return {v: _graphs[(journey_id, v)] for v in set(versions) if (journey_id, v) in _graphs}


async def contact_views(session: AsyncSession, ids: Iterable[int]) -> dict[int, ContactView]:
    return {r.id: ContactView(r.id, r.traits or {}, r.timezone) for r in await session.execute(text("""
        SELECT id, traits, timezone FROM contacts WHERE id = ANY(CAST(:ids AS bigint[]))
    """), {"ids": ints(sorted(set(ids)))})}


STATE_COLUMNS = "s.contact_id, s.entry, s.version, s.node, s.status, s.wake_at, s.waiting_event, s.event, s.entered_at"


def _state(r: Any) -> State:
    return State(r.contact_id, r.entry, r.version, r.node, r.status, r.wake_at, r.waiting_event, r.event or {},
                 r.entered_at)


async def consume(session: AsyncSession, journey_id: int, version: int, now: datetime, *,
                  limit: int = 1000, default_zone: str = "UTC", rendering: Confinement | None = None,
                  policy: DeliveryPolicy | None = None) -> Consumed:
    """Handle the journey's next batch of outbox events (see the module docstring); `version` is the one new
    entries take. Returns what happened; `events` is 0 when the journey is caught up."""
    # One consumer of a journey's cursor at a time: a retried activity whose first attempt still runs (a missed
    # heartbeat) waits here instead of handling the same batch twice.
    await session.execute(text(LOCK), {"j": journey_id})
    # Paused or archived since the pass began: enter and move nobody. The share lock waits for an archive in
    # progress (which ends every contact) to commit, so no contact enters after it.
    if await session.scalar(text("SELECT status FROM journeys WHERE id = :j FOR SHARE"), {"j": journey_id}) != "live":
        return Consumed()
    events = await read_new_events(session, consumer(journey_id), limit=limit)
    done = Consumed(events=len(events))
    if not events:
        return done
    tracked = [e for e in events if e.type == "track" and e.event]
    if not tracked:
        await advance_cursor(session, consumer(journey_id), events[-1].position)
        return done
    latest = (await graphs(session, journey_id, [version]))[version]
    # The join: live states of this journey for exactly the (contact, event name) pairs of the batch.
    # Locked: a contact whose timeout falls due now is moved either by its event here or by `advance_due` (which
    # skips locked rows), never by both; a row `advance_due` holds is read again after it commits, if still live.
    found = {(r.contact_id, r.entry): _state(r) for r in await session.execute(text(f"""
        SELECT {STATE_COLUMNS}
        FROM (SELECT DISTINCT * FROM unnest(CAST(:c AS bigint[]), CAST(:e AS text[]))) AS b(contact_id, event)
        JOIN journey_states s ON s.contact_id = b.contact_id AND s.journey_id = :j
         AND s.status IN ('ready', 'sleeping', 'waiting')
         AND (s.waiting_event = b.event OR b.event = ANY(CAST(:goals AS text[])))
        ORDER BY s.contact_id, s.entry FOR UPDATE OF s
    """), {"c": ints(e.contact_id for e in tracked), "e": texts(e.event for e in tracked), "j": journey_id,
           "goals": await _goal_names(session, journey_id)})}
    rows = list(found.values())
    entering = [e for e in tracked if e.event == latest.trigger.event]
    last: dict[int, tuple[int, datetime]] = {r.contact_id: (r.entry, r.entered_at) for r in await session.execute(
        text("""
        SELECT DISTINCT ON (contact_id) contact_id, entry, entered_at FROM journey_states
        WHERE journey_id = :j AND contact_id = ANY(CAST(:c AS bigint[])) ORDER BY contact_id, entry DESC
    """), {"j": journey_id, "c": ints(sorted({e.contact_id for e in entering}))})} if entering else {}
    by_version = await graphs(session, journey_id, {r.version for r in rows} | {version})
    views = await contact_views(session, {e.contact_id for e in tracked})
    live: dict[int, list[State]] = {}
    for row in rows:
        live.setdefault(row.contact_id, []).append(row)
    pending = _Pending()
    for e in tracked:  # in outbox order: an order paid before the cart was updated converts nothing
        view = views.get(e.contact_id)
        if view is None:
            continue
        payload = {"event": e.event, "properties": e.properties, "context": e.context,
                   "timestamp": e.timestamp.isoformat(), "id": e.id}
        for s in live.get(e.contact_id, []):
            if s.status not in LIVE:
                continue
            g = by_version[s.version]
            if converts(g, view, payload):
                pending.visit(s, s.node, "converted")
                s.status, s.wake_at, s.waiting_event, s.changed = Status.CONVERTED.value, None, None, True
                done.converted += 1
                continue
            if s.status == Status.WAITING.value:
                target = on_event(g, s.node, view, payload)
                if target is not None:
                    pending.visit(s, s.node, "event")
                    pending.visit(s, target, "entered")
                    s.node, s.status, s.wake_at, s.waiting_event = target, "ready", now, None
                    pending.step(journey_id, s, g, view, now, default_zone)
                    done.resumed += 1
        if e.event == latest.trigger.event and triggered(latest, view, payload):
            previous = last.get(e.contact_id)
            if may_enter(latest, previous[1] if previous else None, now):
                entry = (previous[0] if previous else 0) + 1
                s = State(e.contact_id, entry, version, latest.trigger.id, "ready", now, None,
                          {"event": e.event, "properties": e.properties}, now, changed=True, new=True)
                last[e.contact_id] = (entry, now)
                live.setdefault(e.contact_id, []).append(s)
                pending.visit(s, s.node, "entered")
                # On at once, so a later event of this batch finds the contact where the journey put it.
                pending.step(journey_id, s, latest, view, now, default_zone)
                done.entered += 1
    done.moved.contacts = done.entered + done.resumed
    await _perform(session, journey_id, pending, now, done.moved, rendering, policy)
    await save_states(session, journey_id, [s for ss in live.values() for s in ss if s.changed], now)
    await record_visits(session, journey_id, pending.visits, now)
    await advance_cursor(session, consumer(journey_id), events[-1].position)
    return done


DATE_SCAN_EVERY = timedelta(hours=1)  # dates are days in each contact's zone: look again as zones reach midnight
DATE_REENTRY = timedelta(days=300)    # a date comes once a year


async def enter_by_date(session: AsyncSession, journey_id: int, version: int, now: datetime, *,
                        default_zone: str = "UTC") -> int:
    """A date-trait trigger (a birthday): enter, in one statement, every contact whose trait's month and day are
    today's in its own zone and who has not entered in the last 300 days (`once`: ever). Runs at most hourly per
    journey. The entered contacts are `ready`: the advance that follows moves them on. Returns how many entered."""
    graph = (await graphs(session, journey_id, [version]))[version]
    trait = graph.trigger.date_trait
    if trait is None:
        return 0
    scanned = (await session.execute(text("""
        UPDATE journeys SET dates_scanned_at = :now
        WHERE id = :j AND status = 'live' AND (dates_scanned_at IS NULL OR dates_scanned_at <= :due) RETURNING id
    """), {"j": journey_id, "now": now, "due": now - DATE_SCAN_EVERY})).first()
    if scanned is None:
        return 0
    since = None if graph.reentry.value == "once" else now - DATE_REENTRY
    rows = list(await session.execute(text("""
        WITH zones AS (SELECT name FROM pg_timezone_names),
        due AS (
            SELECT c.id FROM contacts c LEFT JOIN zones z ON z.name = c.timezone
            WHERE c.traits->>:trait ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}'
              AND substr(c.traits->>:trait, 6, 5)
                  = to_char(CAST(:now AS timestamptz) AT TIME ZONE coalesce(z.name, :zone), 'MM-DD')
              AND NOT EXISTS (SELECT 1 FROM journey_states s WHERE s.contact_id = c.id AND s.journey_id = :j
                              AND (CAST(:since AS timestamptz) IS NULL OR s.entered_at > :since))
        )
        INSERT INTO journey_states (contact_id, journey_id, entry, version, node, status, wake_at, event,
                                    entered_at, updated_at)
        SELECT d.id, :j, coalesce((SELECT max(entry) FROM journey_states s
                                   WHERE s.contact_id = d.id AND s.journey_id = :j), 0) + 1,
               :v, :node, 'ready', :now, CAST(:event AS jsonb), :now, :now
        FROM due d ORDER BY d.id
        RETURNING contact_id, entry
    """), {"trait": trait, "now": now, "zone": default_zone, "j": journey_id, "since": since, "v": version,
           "node": graph.trigger.id, "event": orjson.dumps({"event": f"date:{trait}", "properties": {}}).decode()}))
    await record_visits(session, journey_id, [(r.contact_id, version, r.entry, graph.trigger.id, "entered")
                                              for r in rows], now)
    return len(rows)


async def _goal_names(session: AsyncSession, journey_id: int) -> list[str]:
    return list((await session.scalars(text("""
        SELECT DISTINCT graph->'goal'->>'event' FROM journey_versions
        WHERE journey_id = :j AND graph->'goal'->>'event' IS NOT NULL
    """), {"j": journey_id})).all())


async def save_states(session: AsyncSession, journey_id: int, states: Sequence[State], now: datetime) -> None:
    """Write the moved states: new ones whole, the others' node, status, wake-up and awaited event (their entry's
    event and time never change, so they are not sent again)."""
    if not states:
        return
    await session.execute(text("""
        INSERT INTO journey_states AS s (contact_id, journey_id, entry, version, node, status, wake_at, waiting_event,
                                         event, entered_at, updated_at)
        SELECT c, :j, e, v, n, st, w, we, coalesce(CAST(ev AS jsonb), '{}'), coalesce(ea, :now), :now
        FROM unnest(CAST(:c AS bigint[]), CAST(:e AS int[]), CAST(:v AS int[]), CAST(:n AS text[]),
                    CAST(:st AS text[]), CAST(:w AS timestamptz[]), CAST(:we AS text[]), CAST(:ev AS text[]),
                    CAST(:ea AS timestamptz[])) AS u(c, e, v, n, st, w, we, ev, ea)
        ON CONFLICT (contact_id, journey_id, entry) DO UPDATE SET
            node = excluded.node, status = excluded.status, wake_at = excluded.wake_at,
            waiting_event = excluded.waiting_event, updated_at = excluded.updated_at
    """), {"j": journey_id, "now": now, "c": ints(s.contact_id for s in states), "e": ints(s.entry for s in states),
           "v": ints(s.version for s in states), "n": texts(s.node for s in states),
           "st": texts(s.status for s in states), "w": times(s.wake_at for s in states),
           "we": texts(s.waiting_event for s in states),
           "ev": texts(orjson.dumps(s.event).decode() if s.new else None for s in states),
           "ea": times(s.entered_at if s.new else None for s in states)})


async def record_visits(session: AsyncSession, journey_id: int, visits: Sequence[tuple[int, int, int, str, str]],
                        now: datetime) -> None:
    """Append (contact, version, entry, node, outcome) transitions to the history and add them to the counts."""
    if not visits:
        return
    await session.execute(text("""
        INSERT INTO journey_history (contact_id, journey_id, version, entry, node, outcome, at)
        SELECT c, :j, v, e, n, o, :now
        FROM unnest(CAST(:c AS bigint[]), CAST(:v AS int[]), CAST(:e AS int[]), CAST(:n AS text[]),
                    CAST(:o AS text[])) WITH ORDINALITY AS u(c, v, e, n, o, i) ORDER BY i
    """), {"j": journey_id, "now": now, "c": ints(v[0] for v in visits), "v": ints(v[1] for v in visits),
           "e": ints(v[2] for v in visits), "n": texts(v[3] for v in visits), "o": texts(v[4] for v in visits)})
    counts = Counter((v[1], v[3], v[4]) for v in visits)
    await session.execute(text("""
        INSERT INTO journey_counts AS k (journey_id, version, node, outcome, n)
        SELECT :j, v, n, o, k FROM unnest(CAST(:v AS int[]), CAST(:n AS text[]), CAST(:o AS text[]),
                                          CAST(:k AS bigint[])) AS u(v, n, o, k)
        ORDER BY v, n, o
        ON CONFLICT (journey_id, version, node, outcome) DO UPDATE SET n = k.n + excluded.n
    """), {"j": journey_id, "v": [k[0] for k in counts], "n": [k[1] for k in counts], "o": [k[2] for k in counts],
           "k": list(counts.values())})


async def advance_due(session: AsyncSession, journey_id: int, now: datetime, *, limit: int = 1000,
                      default_zone: str = "UTC", rendering: Confinement | None = None,
                      policy: DeliveryPolicy | None = None) -> Advanced:
    """Move up to `limit` due contacts on (see the module docstring). `contacts` is 0 when none is due."""
    rows = [_state(r) for r in await session.execute(text(f"""
        SELECT {STATE_COLUMNS} FROM journey_states s
        WHERE journey_id = :j AND status IN ('ready', 'sleeping', 'waiting') AND wake_at <= :now
          AND EXISTS (SELECT 1 FROM journeys WHERE id = :j AND status = 'live')  -- a pause holds everyone
        ORDER BY wake_at LIMIT :n FOR UPDATE SKIP LOCKED
    """), {"j": journey_id, "now": now, "n": limit})]
    done = Advanced(contacts=len(rows))
    if not rows:
        return done
    by_version = await graphs(session, journey_id, {r.version for r in rows})
    views = await contact_views(session, {r.contact_id for r in rows})
    pending = _Pending()
    for s in rows:
        pending.step(journey_id, s, by_version[s.version], views.get(s.contact_id) or ContactView(s.contact_id, {}),
                     now, default_zone)
    await _perform(session, journey_id, pending, now, done, rendering, policy)
    await save_states(session, journey_id, rows, now)
    await record_visits(session, journey_id, pending.visits, now)
    return done


@dataclass
class _Pending:
    """What moving contacts on decided, to be written set-based: transitions and effects."""

    visits: list[tuple[int, int, int, str, str]] = field(default_factory=list)
    sends: list[Step] = field(default_factory=list)
    origins: list[tuple[State, str]] = field(default_factory=list)  # per send: the state and the send node
    traits: dict[int, dict[str, Any]] = field(default_factory=dict)
    grants: list[tuple[State, rewards.Reward]] = field(default_factory=list)

    def visit(self, s: State, node: str, outcome: str) -> None:
        self.visits.append((s.contact_id, s.version, s.entry, node, outcome))

    def step(self, journey_id: int, s: State, graph: Graph, view: ContactView, now: datetime,
             default_zone: str) -> None:
        """Run the interpreter for one contact; its state moves, its transitions and effects are collected."""
        moved = advance(graph, journey_id, s.entry, view, s.event, s.node, Status(s.status), now,
                        default_zone=default_zone)
        self.visits += [(s.contact_id, s.version, s.entry, n, o) for n, o in moved.visits]
        s.node, s.status, s.wake_at, s.waiting_event = moved.node, moved.status.value, moved.wake_at, \
            moved.waiting_event
        s.changed = True
        for effect in moved.effects:
            k = key(journey_id, s.version, s.contact_id, s.entry, effect.node)
            p = effect.payload
            if effect.kind == "send":
                self.sends.append(Step(s.contact_id, k, list(p["chain"]), dict(p["content"]), p["topic"]))
                self.origins.append((s, effect.node))
            elif effect.kind == "update":
                self.traits.setdefault(s.contact_id, {}).update(p["traits"])
            elif effect.kind == "grant":
                self.grants.append((s, rewards.Reward(s.contact_id, k, effect.node, p["program_id"], p["amount"],
                                                      p["coupon_template_id"])))


async def _personalise(session: AsyncSession, journey_id: int, pending: _Pending, rendering: Confinement,
                       done: Advanced) -> None:
    """Render the batch's send templates (domain.journeys.content) in the confined workers, off the event loop, in
    one `map`. A part without `{` is no template and is sent as written (no round trip). A send whose render fails
    or passes a bound is dropped alone: its contact's history gets `render_failed` at the send node (counted like
    any outcome), the reason goes to `done.render_failures`, and the contact moves on as the graph says."""
    wanted = [(i, part) for i, step in enumerate(pending.sends) for part in content.parts(step.content)
              if "{" in part[2]]
    if not wanted:
        return
    ids = sorted({pending.sends[i].contact_id for i, _ in wanted})
    contacts = {r.id: dict(r._mapping) for r in await session.execute(text("""
        SELECT id, user_id, email, phone, timezone, traits FROM contacts WHERE id = ANY(:ids)
    """), {"ids": ids})}
    variables: dict[int, dict[str, Any]] = {}
    for i, _ in wanted:
        if i not in variables:
            step, (s, _node) = pending.sends[i], pending.origins[i]
            variables[i] = templating.context(contacts.get(step.contact_id) or {"id": step.contact_id}, s.event,
                                           journey_id)
    outcomes = await rendering.map(templating.render, [(part[2], variables[i], part[3]) for i, part in wanted])
    rendered: dict[int, list[tuple[content.Part, str]]] = {}
    problems: dict[int, list[str]] = {}
    for (i, part), outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            problems.setdefault(i, []).append(f"content.{part[0]}.{'.'.join(part[1])}: the template {outcome}")
        else:
            rendered.setdefault(i, []).append((part, outcome))
    kept, origins = [], []
    for i, (step, (s, node)) in enumerate(zip(pending.sends, pending.origins, strict=True)):
        if i in problems:  # recorded right after the contact entered the send node
            arrived = (s.contact_id, s.version, s.entry, node, "entered")
            at = max((n for n, v in enumerate(pending.visits) if v == arrived), default=len(pending.visits) - 1)
            pending.visits.insert(at + 1, (s.contact_id, s.version, s.entry, node, "render_failed"))
            done.render_failures.append((s.contact_id, node, "; ".join(problems[i])))
            continue
        kept.append(replace(step, content=content.fill(step.content, rendered[i])) if i in rendered else step)
        origins.append((s, node))
    pending.sends, pending.origins = kept, origins


async def _perform(session: AsyncSession, journey_id: int, pending: _Pending, now: datetime, done: Advanced,
                   rendering: Confinement | None = None, policy: DeliveryPolicy | None = None) -> None:
    """The effects, in the caller's transaction: trait updates (one statement), rewards (`store.journeys.rewards`:
    ledger credits in one posting batch, coupons through Promotions, each under its key), send templates rendered
    (with `rendering`; without it content is sent as written), delivery plans registered — with `policy` also
    claimed, their sends screened and recorded as queued attempts (`records.register_claimed`) — and sent by the
    caller after the commit."""
    if pending.traits:
        ids = sorted(pending.traits)
        await session.execute(text("""
            UPDATE contacts c SET traits = c.traits || CAST(u.t AS jsonb), updated_at = now()
            FROM unnest(CAST(:c AS bigint[]), CAST(:t AS text[])) AS u(id, t) WHERE c.id = u.id
        """), {"c": ids, "t": [orjson.dumps(pending.traits[i]).decode() for i in ids]})
        done.updates = len(ids)
    if pending.grants:
        refused = await rewards.grant(session, journey_id, [r for _, r in pending.grants], now)
        for (s, reward), why in zip(pending.grants, refused, strict=True):
            if why is None:
                done.grants += 1
            else:
                done.refused += 1
                done.refusals.append((s.contact_id, reward.node, why))
                pending.visit(s, reward.node, "grant_refused")
    if rendering is not None and pending.sends:
        await _personalise(session, journey_id, pending, rendering, done)
    done.sends = pending.sends
    if done.sends and policy is not None:
        done.claimed = await records.register_claimed(session, policy, done.sends, now)
    elif done.sends:
        await records.register(session, done.sends, now)


async def next_wake(session: AsyncSession, journey_id: int) -> datetime | None:
    """When the journey's earliest waiting contact is due (None: nobody waits)."""
    return (await session.execute(text("""
        SELECT min(wake_at) FROM journey_states WHERE journey_id = :j AND status IN ('ready', 'sleeping', 'waiting')
    """), {"j": journey_id})).scalar()


async def journey_state(session: AsyncSession, journey_id: int) -> tuple[str, int] | None:
    """(status, latest version) of the journey, or None if it does not exist."""
    row = (await session.execute(text("SELECT status, version FROM journeys WHERE id = :j"), {"j": journey_id})).first()
    return (row.status, row.version) if row else None
