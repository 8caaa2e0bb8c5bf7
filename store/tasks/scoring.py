"""Scoring a batch of outbox events against the active tasks, in Python and per task over the batch (never per
SQL row): who is eligible (the contacts, the audience segment, the task's live window), what each event counts
(CEL filter and compute over only the fields the expressions read, once per expression and event) and which
period it falls in; the progress engine (store/tasks/progress.py) writes the result."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from domain.rules import compile_expression, value_of
from domain.tasks.definitions import TaskDefinition, as_increment, referenced
from domain.tasks.periods import Period, PeriodKind
from domain.tasks.progress import TaskKind
from store.events.outbox import OutboxEvent

CONTACTS = "SELECT id, traits, created_at FROM contacts WHERE id = ANY(%(c)s::bigint[])"
MEMBERS = """
    SELECT segment_id, contact_id FROM segment_members
    WHERE segment_id = ANY(%(s)s::bigint[]) AND contact_id = ANY(%(c)s::bigint[]) AND exited_at IS NULL
"""


_EVENT_FIELDS = {
    "name": lambda e: e.event or "", "type": lambda e: e.type, "properties": lambda e: e.properties,
    "context": lambda e: e.context, "timestamp": lambda e: e.timestamp.isoformat(),
}


def _variables(e: OutboxEvent, contact: tuple[dict[str, Any], datetime] | None,
               fields: dict[str, frozenset[str] | None]) -> dict[str, Any]:
    """The CEL variables of one event, with only the fields the expressions read (`referenced`)."""
    out: dict[str, Any] = {}
    if "event" in fields:
        wanted = fields["event"]
        out["event"] = {k: get(e) for k, get in _EVENT_FIELDS.items() if wanted is None or k in wanted}
    if "contact" in fields:
        out["contact"] = {"id": e.contact_id, "traits": contact[0] if contact else {}}
    return out


_MISSING = object()


@dataclass
class _Evaluator:
    """CEL over a batch: each (expression, event) evaluated once, however many tasks share the expression."""

    contacts: dict[int, tuple[dict[str, Any], datetime]]
    values: dict[tuple[str, int], Any] = field(default_factory=dict)
    variables: dict[tuple[int, Any], dict[str, Any]] = field(default_factory=dict)

    def increments(self, d: TaskDefinition, events: list[OutboxEvent]) -> list[int]:
        fields = referenced((d.filter, d.compute))
        shape = tuple(sorted((k, v and tuple(sorted(v))) for k, v in fields.items()))
        passed = self._values(d.filter, events, fields, shape) if d.filter else None
        computed = self._values(d.compute, events, fields, shape) if d.compute else None
        return [0 if passed is not None and passed[i] is not True else
                1 if computed is None else as_increment(computed[i]) for i in range(len(events))]

    def _values(self, expression: str, events: list[OutboxEvent], fields: dict[str, frozenset[str] | None],
                shape: Any) -> list[Any]:
        program = compile_expression(expression)
        values, variables = self.values, self.variables
        out = []
        for e in events:
            hit = values.get((expression, e.id), _MISSING)
            if hit is _MISSING:
                v = variables.get((e.id, shape))
                if v is None:
                    v = variables[(e.id, shape)] = _variables(e, self.contacts.get(e.contact_id), fields)
                hit = values[(expression, e.id)] = value_of(program, v)
            out.append(hit)
        return out


Sums = dict[tuple[int, int, str], int]  # (contact, task, period key) → increment
Steps = dict[tuple[int, int, str], list[tuple[str, int]]]


async def score(pg: Any, tasks: dict[int, TaskDefinition], events: list[OutboxEvent]) -> tuple[Sums, Steps, int]:
    """The batch's matches: summed increments by (contact, task, period key) for counting tasks, the matched
    events' (action, increment) in event-time order by (task, contact, period key) for the others, and how many
    (event, task) pairs matched."""
    by_action: dict[str, list[int]] = defaultdict(list)
    for task_id, d in tasks.items():
        for action in d.actions:
            by_action[action].append(task_id)
    candidates: dict[int, list[OutboxEvent]] = defaultdict(list)
    bounded = {t for t, d in tasks.items() if d.starts_at or d.ends_at}
    # Composite steps count in event-time order; the other kinds add up, so outbox order will do.
    ordered = sorted(events, key=lambda e: (e.timestamp, e.id)) \
        if any(d.kind is TaskKind.COMPOSITE for d in tasks.values()) else events
    for e in ordered:
        if e.type == "track" and e.event:
            for task_id in by_action.get(e.event, ()):
                if task_id not in bounded or tasks[task_id].is_live(e.timestamp):
                    candidates[task_id].append(e)
    sums: Sums = {}
    steps: Steps = defaultdict(list)
    if not candidates:
        return sums, steps, 0
    contact_ids = sorted({e.contact_id for es in candidates.values() for e in es})
    contacts = {r[0]: (r[1], r[2]) for r in await (await pg.execute(CONTACTS, {"c": contact_ids})).fetchall()}
    segments = sorted({d.segment_id for t, d in tasks.items() if d.segment_id and t in candidates})
    members: set[tuple[int, int]] = set()
    if segments:
        members = {(r[0], r[1]) for r in await (await pg.execute(MEMBERS, {"s": segments, "c": contact_ids}))
                   .fetchall()}
    cel = _Evaluator(contacts)
    period_keys: dict[tuple[Period, int], str | None] = {}  # tasks sharing a period share its keys
    matched = 0
    for task_id, es in candidates.items():
        d = tasks[task_id]
        es = [e for e in es if e.contact_id in contacts and (not d.segment_id or (d.segment_id, e.contact_id)
                                                             in members)]
        amounts = cel.increments(d, es) if d.filter or d.compute else [1] * len(es)
        period, per_contact, counting = d.period, d.period.kind is PeriodKind.NEW_USER, counts_only(d)
        for e, amount in zip(es, amounts, strict=True):
            if amount <= 0:
                continue
            if per_contact:
                key = period.key(e.timestamp, contacts[e.contact_id][1])
            else:
                key = period_keys.get((period, e.id), "")
                if key == "":
                    key = period_keys[(period, e.id)] = period.key(e.timestamp)
            if key is None:
                continue
            matched += 1
            if counting:
                at = (e.contact_id, task_id, key)
                sums[at] = sums.get(at, 0) + amount
            else:
                steps[(task_id, e.contact_id, key)].append((e.event or "", amount))
    return sums, steps, matched


def counts_only(d: TaskDefinition) -> bool:
    """A counting task: its period's completions are a function of the period's progress (simple tasks, ladders,
    and streaks — at most one completion a period — without a lifetime cap or variants;
    domain/tasks/progress.py:completions_at), so one upsert advances it. A streak's reward also depends on the
    streak so far: its new completions take one more lock-and-write of their participant rows (`_streaks`)."""
    if d.lifetime_cap is not None or d.variants:
        return False
    return d.kind in (TaskKind.SIMPLE, TaskKind.LADDER, TaskKind.STREAK)
