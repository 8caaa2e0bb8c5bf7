"""The progress engine: one batch of committed events from the ingest outbox → task progress → reward grants, in
one transaction with the consumer's cursor (so a batch replayed after a crash before the commit counts once).

Per batch, a fixed number of statements whatever its size: read the outbox; the active tasks listening to its
event names (compiled definitions cached per task version); the contacts' traits and first-seen times; segment
membership for audience tasks; then one counting upsert for simple tasks, ladders and streaks (completions in
the row's own arithmetic; a streak's completed periods then lock and write their participant rows), and for the
other tasks (composites, lifetime caps, variants) lock-or-create every touched progress and participant row in
one ordered `INSERT … ON CONFLICT DO UPDATE … RETURNING` each, advance them in Python (domain/tasks/progress.py)
and write them back with one upsert per table; lock the budgeted tasks and reserve what the new rewards cost; one
grants insert. Filters and computes are CEL evaluated per task over the batch (only the fields they read, once
per expression and event), never per SQL row.

Concurrency: consumers of the same cursor serialise on a transaction advisory lock (a second consumer reads
after the first committed); any other writer meets the row locks, so caps and budgets hold under races.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.tasks.definitions import ClaimMode, TaskDefinition, from_mapping
from domain.tasks.lifecycle import GrantStatus
from domain.tasks.periods import Period
from domain.tasks.progress import (
    Participant,
    Reward,
    Rule,
    Slot,
    TaskKind,
    advance,
    completion_reward,
    completions_at,
    fit_budget,
    per_period_max,
    reward_reference,
)
from store.db import driver
from store.events.outbox import advance_cursor, read_new_events
from store.tasks.scoring import Sums, counts_only, score

CONSUMER = "tasks"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('event_cursor:' || %(c)s))"

ACTIVE = """
    SELECT id, version, definition FROM tasks WHERE status = 'active' AND actions && %(a)s::text[]
"""
LOCK_PROGRESS = """
    INSERT INTO task_progress AS t (contact_id, task_id, period_key)
    SELECT * FROM unnest(%(c)s::bigint[], %(t)s::bigint[], %(k)s::text[]) ORDER BY 1, 2, 3
    ON CONFLICT (contact_id, task_id, period_key) DO UPDATE SET progress = t.progress
    RETURNING contact_id, task_id, period_key, progress, completions, stage
"""
LOCK_PARTICIPANTS = """
    INSERT INTO task_participants AS t (contact_id, task_id, variant)
    SELECT * FROM unnest(%(c)s::bigint[], %(t)s::bigint[], %(v)s::smallint[]) ORDER BY 1, 2
    ON CONFLICT (contact_id, task_id) DO UPDATE SET lifetime = t.lifetime
    RETURNING contact_id, task_id, variant, lifetime, streak, last_key
"""
# The fast path for counting tasks (simple tasks, ladders, streaks; `counts_only`): one upsert adds the
# increments and recomputes completions under the threshold in the row's own arithmetic (`task_completions`,
# migration 0016, over the task row's definition: active definitions never change, so a concurrent writer of the
# same row can never push completions past the threshold); the rewards are the difference.
COUNT = """
    INSERT INTO task_progress AS t (contact_id, task_id, period_key, progress, completions, status, updated_at)
    SELECT k.c, k.t, k.k, k.inc, k.done, CASE WHEN k.done >= k.cap THEN 2 ELSE 1 END, %(now)s
    FROM unnest(%(c)s::bigint[], %(t)s::bigint[], %(k)s::text[], %(inc)s::bigint[], %(done)s::int[],
                %(cap)s::int[]) AS k(c, t, k, inc, done, cap)
    ORDER BY 1, 2, 3
    ON CONFLICT (contact_id, task_id, period_key) DO UPDATE SET
        progress = t.progress + excluded.progress,
        completions = greatest(t.completions, (SELECT task_completions(d.definition, t.progress + excluded.progress)
                                               FROM tasks d WHERE d.id = t.task_id)),
        status = CASE WHEN t.status >= 3 THEN t.status
                      WHEN (SELECT task_completions(d.definition, t.progress + excluded.progress)
                                   >= task_period_max(d.definition) FROM tasks d WHERE d.id = t.task_id)
                      THEN 2 ELSE 1 END,
        updated_at = excluded.updated_at
    RETURNING t.contact_id, t.task_id, t.period_key, t.progress, t.completions
"""
# Writes go back as upserts of rows locked earlier in the transaction: index probes per row, where an
# UPDATE … FROM unnest over a partitioned table gets a join plan that does not scale with the batch.
WRITE_PROGRESS = """
    INSERT INTO task_progress AS t (contact_id, task_id, period_key, progress, completions, stage, status, updated_at)
    SELECT k.*, %(now)s FROM unnest(%(c)s::bigint[], %(t)s::bigint[], %(k)s::text[], %(p)s::bigint[],
                                    %(n)s::int[], %(s)s::int[], %(st)s::smallint[]) AS k
    ON CONFLICT (contact_id, task_id, period_key) DO UPDATE SET progress = excluded.progress,
        completions = excluded.completions, stage = excluded.stage,
        status = CASE WHEN t.status >= 3 THEN t.status ELSE excluded.status END, updated_at = excluded.updated_at
"""
WRITE_PARTICIPANTS = """
    INSERT INTO task_participants AS t (contact_id, task_id, lifetime, streak, last_key, updated_at)
    SELECT k.*, %(now)s FROM unnest(%(c)s::bigint[], %(t)s::bigint[], %(l)s::int[], %(s)s::int[], %(k)s::text[]) AS k
    ON CONFLICT (contact_id, task_id) DO UPDATE SET lifetime = excluded.lifetime, streak = excluded.streak,
        last_key = excluded.last_key, updated_at = excluded.updated_at
"""
LOCK_BUDGETS = """
    SELECT id, budget, reserved FROM tasks WHERE id = ANY(%(t)s::bigint[]) AND budget IS NOT NULL
    ORDER BY id FOR UPDATE
"""
RESERVE = """
    UPDATE tasks t SET reserved = t.reserved + k.amount, updated_at = %(now)s,
        status = CASE WHEN k.exhausted AND t.status = 'active' THEN 'paused' ELSE t.status END,
        version = t.version + CASE WHEN k.exhausted AND t.status = 'active' THEN 1 ELSE 0 END,
        alert = CASE WHEN k.exhausted THEN 'budget exhausted: paused automatically' ELSE t.alert END
    FROM unnest(%(t)s::bigint[], %(a)s::bigint[], %(x)s::bool[]) AS k(id, amount, exhausted)
    WHERE t.id = k.id
"""
INSERT_GRANTS = """
    INSERT INTO task_grants (task_id, contact_id, period_key, n, reference, program_id, amount, status,
                             claim_deadline, failure, reward_type, coupon_template_id)
    SELECT * FROM unnest(%(t)s::bigint[], %(c)s::bigint[], %(k)s::text[], %(n)s::int[], %(r)s::text[],
                         %(p)s::bigint[], %(a)s::bigint[], %(s)s::text[], %(d)s::timestamptz[], %(f)s::text[],
                         %(rt)s::text[], %(ct)s::bigint[])
    ON CONFLICT (contact_id, task_id, period_key, n) DO NOTHING
"""


@lru_cache(maxsize=65536)
def previous_key(period: Period, key: str) -> str | None:
    return period.previous_key(key)


def ints(values: list[Any]) -> str:
    """A Postgres array literal of integers (NULL for None): psycopg's per-element list adaptation costs more than
    the statement itself for arrays of thousands."""
    if None not in values and all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def texts(values: list[Any]) -> str:
    return "{" + ",".join("NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


@dataclass
class Compiled:
    """Definitions by task id, kept while their version is unchanged (CEL programs are cached by rules.py)."""

    tasks: dict[int, tuple[int, TaskDefinition]] = field(default_factory=dict)

    def get(self, task_id: int, version: int, data: dict[str, Any]) -> TaskDefinition:
        hit = self.tasks.get(task_id)
        if hit is None or hit[0] != version:
            hit = (version, from_mapping(data))
            self.tasks[task_id] = hit
        return hit[1]


@dataclass
class BatchResult:
    events: int = 0
    matched: int = 0       # (event, task) pairs that advanced progress
    rewards: int = 0       # grants recorded
    paused: list[int] = field(default_factory=list)  # tasks this batch paused (budget exhausted)


@dataclass
class _Grant:
    task_id: int
    contact_id: int
    key: str
    reward: Reward
    program_id: int | None
    manual: bool
    window: int | None


async def process_batch(session: AsyncSession, compiled: Compiled, *, now: datetime, limit: int = 1000,
                        consumer: str = CONSUMER) -> BatchResult:
    """Consume one batch of the outbox (nothing if none is waiting) in the caller's transaction. `consumer` names
    the cursor (a benchmark follows the outbox under its own)."""
    pg = await driver(session)
    await pg.execute(LOCK, {"c": consumer})
    events = await read_new_events(session, consumer, limit=limit)
    if not events:
        return BatchResult()
    result = BatchResult(events=len(events))
    actions = sorted({e.event for e in events if e.event})
    rows = await (await pg.execute(ACTIVE, {"a": actions})).fetchall() if actions else []
    tasks = {r[0]: compiled.get(r[0], r[1], r[2]) for r in rows}
    sums, steps, result.matched = await score(pg, tasks, events)
    grants = await _count(pg, tasks, sums, now) if sums else []
    if steps:
        grants += await _advance_rows(pg, tasks, steps, now)
    await _record(pg, tasks, grants, now, result)
    await advance_cursor(session, consumer, events[-1].position)
    return result


async def _count(pg: Any, tasks: dict[int, TaskDefinition], sums: Sums, now: datetime) -> list[_Grant]:
    keys = sorted(sums)  # (contact, task, key): the order rows are locked in everywhere
    rules = {t: d.rule() for t, d in tasks.items() if counts_only(d)}
    caps = {t: per_period_max(r) for t, r in rules.items()}
    rows = await (await pg.execute(COUNT, {
        "c": ints([k[0] for k in keys]), "t": ints([k[1] for k in keys]), "k": texts([k[2] for k in keys]),
        "inc": ints([sums[k] for k in keys]), "done": ints([completions_at(rules[k[1]], sums[k]) for k in keys]),
        "cap": ints([caps[k[1]] for k in keys]), "now": now})).fetchall()
    grants: list[_Grant] = []
    streaks: list[tuple[int, int, str]] = []
    for contact_id, task_id, key, progress, completions in rows:
        rule = rules[task_id]
        before = completions_at(rule, progress - sums[(contact_id, task_id, key)])
        if completions > before:
            if rule.kind is TaskKind.STREAK:
                streaks.append((contact_id, task_id, key))
                continue
            d = tasks[task_id]
            grants += [_Grant(task_id, contact_id, key, Reward(n, amount), d.program_id,
                              d.claim_mode is ClaimMode.MANUAL, d.claim_window_seconds)
                       for n in range(before + 1, completions + 1) if (amount := completion_reward(rule, n)) > 0]
    return grants + (await _streaks(pg, tasks, rules, streaks, now) if streaks else [])


async def _streaks(pg: Any, tasks: dict[int, TaskDefinition], rules: dict[int, Rule],
                   completed: list[tuple[int, int, str]], now: datetime) -> list[_Grant]:
    """Periods of counted streak tasks that just completed: lock their participants (after the progress rows,
    like every writer), extend or restart each streak in period order, reward day n of it, write them back."""
    pairs = sorted({(c, t) for c, t, _ in completed})
    locked = await pg.execute(LOCK_PARTICIPANTS, {"c": ints([p[0] for p in pairs]), "t": ints([p[1] for p in pairs]),
                                                  "v": ints([None] * len(pairs))})
    who = {(r[0], r[1]): Participant(r[3], r[4], r[5]) for r in await locked.fetchall()}
    grants: list[_Grant] = []
    for contact_id, task_id, key in sorted(completed):  # daily, weekly and monthly keys sort in time order
        d, rule = tasks[task_id], rules[task_id]
        _, who[(contact_id, task_id)], rewards = advance(rule, Slot(), who[(contact_id, task_id)], key,
                                                         previous_key(d.period, key), [("", rule.num)])
        grants += [_Grant(task_id, contact_id, key, r, d.program_id, d.claim_mode is ClaimMode.MANUAL,
                          d.claim_window_seconds) for r in rewards if r.amount > 0]
    await pg.execute(WRITE_PARTICIPANTS, {
        "c": ints([p[0] for p in pairs]), "t": ints([p[1] for p in pairs]),
        "l": ints([who[p].lifetime for p in pairs]), "s": ints([who[p].streak for p in pairs]),
        "k": texts([who[p].last_key for p in pairs]), "now": now})
    return grants


async def _advance_rows(pg: Any, tasks: dict[int, TaskDefinition],
                        steps: dict[tuple[int, int, str], list[tuple[str, int]]], now: datetime) -> list[_Grant]:
    keys = sorted(steps, key=lambda k: (k[1], k[0], k[2]))
    locked = await pg.execute(LOCK_PROGRESS, {"c": ints([k[1] for k in keys]), "t": ints([k[0] for k in keys]),
                                              "k": texts([k[2] for k in keys])})
    slots = {(r[1], r[0], r[2]): Slot(r[3], r[4], r[5]) for r in await locked.fetchall()}
    pairs = sorted({(k[1], k[0]) for k in keys if tasks[k[0]].keeps_participants})
    variants = [tasks[t].variant_of(t, c) for c, t in pairs]
    who: dict[tuple[int, int], tuple[int | None, Participant]] = {}
    if pairs:
        locked = await pg.execute(LOCK_PARTICIPANTS, {"c": ints([p[0] for p in pairs]),
                                                      "t": ints([p[1] for p in pairs]), "v": ints(variants)})
        who = {(r[1], r[0]): (r[2], Participant(r[3], r[4], r[5])) for r in await locked.fetchall()}
    kept = set(who)
    fresh = (None, Participant())
    rules: dict[tuple[int, int | None], Rule] = {}
    grants: list[_Grant] = []
    new_slots: dict[tuple[int, int, str], tuple[Slot, int]] = {}
    # Periods of one (task, contact) in time order, so a streak sees yesterday before today.
    for task_id, contact_id, key in sorted(keys):  # daily, weekly and monthly keys sort in time order
        d = tasks[task_id]
        variant, participant = who.get((task_id, contact_id), fresh)
        rule = rules[(task_id, variant)] if (task_id, variant) in rules else \
            rules.setdefault((task_id, variant), d.rule(variant))
        slot, participant, rewards = advance(rule, slots[(task_id, contact_id, key)], participant, key,
                                             previous_key(d.period, key), steps[(task_id, contact_id, key)])
        who[(task_id, contact_id)] = (variant, participant)
        new_slots[(task_id, contact_id, key)] = (slot, int(slot.status(rule, participant)))
        grants += [_Grant(task_id, contact_id, key, r, d.program_id, d.claim_mode is ClaimMode.MANUAL,
                          d.claim_window_seconds) for r in rewards if r.amount > 0]
    ks = list(new_slots)
    await pg.execute(WRITE_PROGRESS, {
        "c": ints([k[1] for k in ks]), "t": ints([k[0] for k in ks]), "k": texts([k[2] for k in ks]),
        "p": ints([new_slots[k][0].progress for k in ks]), "n": ints([new_slots[k][0].completions for k in ks]),
        "s": ints([new_slots[k][0].stage for k in ks]), "st": ints([new_slots[k][1] for k in ks]), "now": now})
    ps = [p for p in who if p in kept]
    if ps:
        await pg.execute(WRITE_PARTICIPANTS, {
            "c": ints([p[1] for p in ps]), "t": ints([p[0] for p in ps]), "l": ints([who[p][1].lifetime for p in ps]),
            "s": ints([who[p][1].streak for p in ps]), "k": texts([who[p][1].last_key for p in ps]), "now": now})
    return grants


async def _record(pg: Any, tasks: dict[int, TaskDefinition], grants: list[_Grant], now: datetime,
                  result: BatchResult) -> None:
    """Reserve the budget the new rewards cost (a reward that does not fit is recorded as failed and pauses the
    task), then insert the grants: pending (automatic claim) or claimable until the window closes (manual)."""
    if not grants:
        return
    failure: list[str | None] = [None] * len(grants)
    budgeted = sorted({g.task_id for g in grants if tasks[g.task_id].budget is not None})
    if budgeted:
        locked = {r[0]: r[1] - r[2] for r in await (await pg.execute(LOCK_BUDGETS, {"t": budgeted})).fetchall()}
        reserve_t, reserve_a, reserve_x = [], [], []
        for task_id, left in locked.items():
            idx = [i for i, g in enumerate(grants) if g.task_id == task_id]
            fits = fit_budget(left, [grants[i].reward.amount for i in idx])
            for i in idx[fits:]:
                failure[i] = "budget exhausted"
            spent = sum(grants[i].reward.amount for i in idx[:fits])
            exhausted = fits < len(idx) or spent == left
            reserve_t.append(task_id), reserve_a.append(spent), reserve_x.append(exhausted)
            if exhausted:
                result.paused.append(task_id)
        await pg.execute(RESERVE, {"t": reserve_t, "a": reserve_a, "x": reserve_x, "now": now})
    status = [GrantStatus.FAILED if f else GrantStatus.CLAIMABLE if g.manual else GrantStatus.PENDING
              for g, f in zip(grants, failure, strict=True)]
    await pg.execute(INSERT_GRANTS, {
        "t": ints([g.task_id for g in grants]), "c": ints([g.contact_id for g in grants]),
        "k": texts([g.key for g in grants]),
        "n": ints([g.reward.n for g in grants]),
        "r": texts([reward_reference(g.task_id, g.contact_id, g.key, g.reward.n) for g in grants]),
        "p": ints([g.program_id for g in grants]), "a": ints([g.reward.amount for g in grants]),
        "s": texts([s.value for s in status]),
        "d": [now + timedelta(seconds=g.window or 0) if s is GrantStatus.CLAIMABLE else None
              for g, s in zip(grants, status, strict=True)],
        "f": texts(failure), "rt": texts([tasks[g.task_id].reward_type.value for g in grants]),
        "ct": ints([tasks[g.task_id].coupon_template_id for g in grants])})
    result.rewards += sum(1 for f in failure if f is None)
