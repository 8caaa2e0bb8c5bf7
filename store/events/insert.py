"""Events: the one statement that stores a batch whose identities are known — the hot path (`ingest_known`, on
an autocommit connection) and the last step of the resolving path (`store.ingest`).

It writes the events, per-contact daily aggregates (`contact_event_daily`), `contacts.last_seen_at` and one
`event_outbox` row for the batch — one statement for all of it, so a crash loses or duplicates nothing and a
retried batch adds nothing. A message id is stored once per contact: the unique index `(contact_id,
message_id)` on events refuses a replay, which carries the same identity and so lands on the same contact.
`event_dedupe` remembers the message ids of erased contacts (`store.events.erasure`), whose events and
identities are gone, for the dedupe window (`unseen`).

Downstream consumers read what was stored through the outbox (`store.events.outbox`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg.errors
from psycopg import AsyncConnection

from domain.events import Event, IdentityKind, needs_resolution

# Each row names its event's primary identity (k, v); the contact comes from `identities`. If any row's
# identity is unknown nothing is written and `all_known` is false: the caller resolves and retries.
# Columns arrive as one text parameter each, values joined by SEP (NUL marks a NULL): splitting a string is
# several times cheaper for Postgres than decoding a JSON document of rows, and for Python than adapting lists.
# The lookups are forced to be index nested loops (LATERAL … OFFSET 0) whatever the row estimate.
#
# Two forms. The optimistic one (`{new}` is every row) expects no message id to have been seen: the events'
# unique index on (contact_id, message_id) checks each one on its way in, so a fresh batch pays no extra probe
# for deduplication. A replay (or a concurrent batch storing the same id) makes it fail with a unique
# violation; the careful form then leaves out what is stored with an anti-join and reports what it stored.
INSERT = """
WITH src AS (
    SELECT i.contact_id AS c, r.* FROM unnest(
        {k}, {v}, {m}, {t}, {e}, {p}::jsonb[], {xi}::int[], {ts}::timestamptz[], {ra}::timestamptz[])
        WITH ORDINALITY AS r(k, v, m, t, e, p, xi, ts, ra, n)
    LEFT JOIN LATERAL (SELECT contact_id FROM identities i WHERE i.kind = r.k AND i.value = r.v OFFSET 0) i ON true
), ctx AS (  -- each distinct context once (events of one device share it): decoding JSON is the costly part
    SELECT * FROM unnest({x}::jsonb[]) WITH ORDINALITY AS c(x, i)
), ok AS (
    SELECT count(c) = count(*) AS all_known FROM src
), new AS (
    SELECT * FROM src s WHERE (SELECT all_known FROM ok){new}
), ins AS (
    INSERT INTO events (contact_id, id, message_id, type, event, properties, context, timestamp, received_at)
    SELECT s.c, nextval('events_id_seq'), s.m, s.t, s.e, s.p, ctx.x, s.ts, s.ra
    FROM new s JOIN ctx ON ctx.i = s.xi
    ORDER BY s.n  -- event ids follow the batch order
    RETURNING contact_id, id, type, event, timestamp, message_id
), agg AS (
    INSERT INTO contact_event_daily AS d (contact_id, event, day, count, first_at, last_at)
    SELECT contact_id, CASE type WHEN 'track' THEN event ELSE '$' || type END,
           (timestamp AT TIME ZONE 'UTC')::date, count(*), min(timestamp), max(timestamp)
    FROM ins WHERE type IN ('track', 'page', 'screen')
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (contact_id, event, day) DO UPDATE SET count = d.count + excluded.count,
        first_at = least(d.first_at, excluded.first_at), last_at = greatest(d.last_at, excluded.last_at)
), latest AS (
    SELECT contact_id, max(timestamp) AS ts FROM ins GROUP BY 1 ORDER BY 1
), seen AS (  -- updated in id order (the join is driven by `latest`), so concurrent batches cannot deadlock
    UPDATE contacts c SET last_seen_at = l.ts FROM latest l
    WHERE c.id = l.contact_id AND (c.last_seen_at IS NULL OR c.last_seen_at < l.ts)
), box AS (
    INSERT INTO event_outbox (contact_ids, event_ids)
    SELECT array_agg(contact_id ORDER BY id), array_agg(id ORDER BY id) FROM ins HAVING count(*) > 0
)
SELECT (SELECT all_known FROM ok){stored}
"""
CAREFUL = {"new": "\n      AND NOT EXISTS (SELECT FROM events e WHERE e.contact_id = s.c AND e.message_id = s.m"
                  " OFFSET 0)",
           "stored": ", (SELECT array_agg(message_id) FROM ins)"}
OPTIMISTIC = {"new": "", "stored": ", NULL::text[]"}
SEP, NUL = "\x1e", "\x1f"
COLUMNS = ("k", "v", "m", "t", "e", "p", "xi", "x", "ts", "ra")
_SPLIT = {c: f"string_to_array(%({c})s, E'\\x1e', E'\\x1f')" for c in COLUMNS}
_ARRAYS = {c: f"%({c})s::text[]" for c in COLUMNS}  # for values that contain SEP or NUL
SPLIT, ARRAYS = INSERT.format(**_SPLIT, **CAREFUL), INSERT.format(**_ARRAYS, **CAREFUL)
SPLIT_OPTIMISTIC, ARRAYS_OPTIMISTIC = INSERT.format(**_SPLIT, **OPTIMISTIC), INSERT.format(**_ARRAYS, **OPTIMISTIC)
OPTIMISTIC_FORM = {SPLIT: SPLIT_OPTIMISTIC, ARRAYS: ARRAYS_OPTIMISTIC}

RACE_ATTEMPTS = 5

# Message ids of a batch already stored: on the contact that now holds the event's primary identity (a merge
# moves identities and events together), or remembered for an erased contact.
SEEN = """
SELECT message_id FROM event_dedupe WHERE message_id = ANY(%(m)s)
UNION ALL
SELECT e.message_id FROM unnest(%(k)s::text[], %(v)s::text[], %(m)s::text[]) AS u(k, v, m)
JOIN identities i ON i.kind = u.k AND i.value = u.v
JOIN events e ON e.contact_id = i.contact_id AND e.message_id = u.m
"""


@dataclass(frozen=True, slots=True)
class IngestResult:
    received: int
    inserted: int

    @property
    def duplicates(self) -> int:
        return self.received - self.inserted


class IdentityRace(Exception):
    """An identity vanished between resolving and inserting (a concurrent erasure); retry the batch."""


async def connect_writer(url: str) -> AsyncConnection[Any]:
    """An autocommit connection for `ingest_known`. Its statement is prepared at once with one generic plan
    (no replanning per group, the same lock order in every group) that never scans a table sequentially,
    even when the plan was made while the tables were nearly empty."""
    conn = await AsyncConnection.connect(
        url, autocommit=True, application_name="nudge-ingest", prepare_threshold=0,
        options="-c plan_cache_mode=force_generic_plan -c enable_seqscan=off")
    return conn


def distinct(events: Sequence[Event]) -> list[Event]:
    """The first event of each message id, in batch order."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.message_id, event)
    return list(unique.values())


async def ingest_known(pg: AsyncConnection[Any], batches: Sequence[Sequence[Event]]) -> list[IngestResult | None]:
    """The hot path, on an autocommit connection: batches of plain events for identities that already
    exist, written together as one statement (one transaction, one round trip, one WAL flush). Per
    batch, the result, or None where `store.ingest.ingest` must resolve identities instead."""
    results: list[IngestResult | None] = [None] * len(batches)
    plain = [i for i, b in enumerate(batches) if b and not needs_resolution(b)]
    if not plain:
        return results
    combined = distinct([e for i in plain for e in batches[i]])
    all_known, stored = await write(pg, combined)
    if not all_known:
        if len(plain) == 1:
            return results
        for i in plain:  # somebody is new: find out who, batch by batch
            results[i] = (await ingest_known(pg, [batches[i]]))[0]
        return results
    fresh = set(stored)
    for i in plain:
        inserted = 0
        for event in batches[i]:
            if event.message_id in fresh:
                fresh.discard(event.message_id)  # a message id counts once, for its first batch
                inserted += 1
        results[i] = IngestResult(received=len(batches[i]), inserted=inserted)
    return results


async def unseen(pg: AsyncConnection[Any], batch: Sequence[Event]) -> list[Event]:
    """The events of a batch (of distinct message ids) not stored yet, in one query: neither on the contact
    holding the event's primary identity nor remembered for an erased contact."""
    cur = await pg.execute(SEEN, {"k": [e.primary_key[0] for e in batch], "v": [e.primary_key[1] for e in batch],
                                  "m": [e.message_id for e in batch]})
    seen = {r[0] for r in await cur.fetchall()}
    return [e for e in batch if e.message_id not in seen]


def _columns(batch: Sequence[Event]) -> tuple[str, dict[str, str | list[str | None]]]:
    """The statement and its column parameters: joined strings, or text arrays when a value holds SEP or NUL.
    One pass over the batch: this runs for every event the API takes."""
    kinds, values, messages, types, names, props, positions, stamps, received = ([] for _ in range(9))
    contexts: dict[bytes, str] = {}  # JSON -> its 1-based position in column x
    received_text: dict[datetime, str] = {}
    dumps, user, anonymous = orjson.dumps, IdentityKind.USER_ID.value, IdentityKind.ANONYMOUS_ID.value
    nulls = 0
    for e in batch:  # the primary identity: userId wins over anonymousId (Event.primary_key)
        if e.user_id is not None:
            kinds.append(user)
            values.append(e.user_id)
        else:
            kinds.append(anonymous)
            values.append(e.anonymous_id or "")
        messages.append(e.message_id)
        types.append(e.type)
        if e.event is None:
            nulls += 1
            names.append(NUL)
        else:
            names.append(e.event)
        props.append(dumps(e.properties).decode())  # orjson escapes every control character
        context = dumps(e.context)
        position = contexts.get(context)
        if position is None:
            position = contexts[context] = str(len(contexts) + 1)
        positions.append(position)
        stamps.append(e.timestamp.isoformat())
        at = received_text.get(e.received_at)
        if at is None:
            at = received_text[e.received_at] = e.received_at.isoformat()
        received.append(at)
    cols: dict[str, list[str]] = {"k": kinds, "v": values, "m": messages, "t": types, "e": names, "p": props,
                                  "xi": positions, "x": [c.decode() for c in contexts], "ts": stamps, "ra": received}
    joined = {name: SEP.join(column) for name, column in cols.items()}
    last = len(batch) - 1
    if joined["v"].count(SEP) == last and joined["m"].count(SEP) == last and joined["e"].count(SEP) == last \
            and joined["e"].count(NUL) == nulls and NUL not in joined["v"] and NUL not in joined["m"]:
        return SPLIT, joined  # type: ignore[return-value]
    cols["e"] = [e.event for e in batch]  # type: ignore[misc]  # real NULLs in the array form
    return ARRAYS, cols  # type: ignore[return-value]


async def write(pg: AsyncConnection[Any], batch: Sequence[Event]) -> tuple[bool, list[str]]:
    """(every identity known, message ids stored) for a batch of distinct message ids; nothing is written
    unless every identity is known. The optimistic form first, then the careful one (see INSERT)."""
    careful, params = _columns(batch)
    savepoint = not pg.autocommit  # inside the caller's transaction: undo only this statement on a race
    forms = [OPTIMISTIC_FORM[careful], *[careful] * RACE_ATTEMPTS]
    for attempt, statement in enumerate(forms):
        try:
            if savepoint:
                await pg.execute("SAVEPOINT nudge_ingest")
            row = await (await pg.execute(statement, params)).fetchone()
            if savepoint:
                await pg.execute("RELEASE SAVEPOINT nudge_ingest")
            break
        except psycopg.errors.UniqueViolation:  # a replay, or a concurrent batch stored one of these ids first
            if savepoint:
                await pg.execute("ROLLBACK TO SAVEPOINT nudge_ingest")
            if attempt == len(forms) - 1:
                raise
    assert row is not None
    all_known = bool(row[0])
    if statement is not careful:  # the optimistic form stored everything, or nothing when somebody is unknown
        return all_known, [e.message_id for e in batch] if all_known else []
    return all_known, list(row[1] or [])
