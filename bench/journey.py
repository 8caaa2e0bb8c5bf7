"""`nudge bench journey`: contacts/s entering a journey, sends/s out of it and events/s matched to contacts waiting
for them, on a compressed clock.

`n` contacts (created, not timed) enter a segment: `n` `segment_entered` events in outbox rows of 1000, as a
segment refresh emits them (not timed). The journey: segment entered → wait 1 day → condition (CEL over the
contact's traits; 3 in 4 pass) → send through a recording channel (`push`: accepts and counts, no network) → wait up
to a day for `order_paid` → exit. Then, with the runtime's own store services and delivery service (what
`run_journey`, the JourneyWorkflow's activity, runs per pass; the workflow's round trips are per pass, not per
contact):

1. entry: the journey consumes the events from its outbox cursor and moves every contact into the 1-day wait —
   the figure, contacts/s; the limit is reading the same events from the outbox alone (a second cursor);
2. a day later on the compressed clock: the due contacts are advanced through condition and send (their sends
   claimed with the moves), and the sends go through the delivery service to the recording channel — sends/s;
3. an `order_paid` event for every contact (3 in 4 awaited; created, not timed): the journey joins them to the
   contacts waiting for them and moves those on — events/s matched, beside the same events read alone.

Everything the run wrote is removed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from activities.channels.delivery import DeliveryService, Progress
from activities.journeys import Sending
from bench.core import BenchContext, BenchResult
from channels.base import Message, SendResult
from domain.channels.policy import DeliveryPolicy
from store.db import make_engine, make_sessionmaker, plain_url, transaction
from store.events.outbox import advance_cursor, read_new_events
from store.journeys import definitions, runtime

DATABASE_ONLY = True
NAME = "journey"
DESCRIPTION = "Contacts/s entering a journey (segment entered → wait 1 day) and sends/s after the wait, " \
              "compressed clock"
PARAMS: dict[str, Any] = {"n": 10_000, "batch": 1000, "send_batch": 5000}


class RecordingChannel:
    name = "push"

    def __init__(self) -> None:
        self.sent = 0

    async def send_many(self, messages: Sequence[Message]) -> list[SendResult]:
        self.sent += len(messages)
        return [SendResult(m.key, True, f"rec-{m.key}") for m in messages]


def _graph(segment: int) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "segment_id": segment, "on": "entered", "next": "day"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "active"},
        {"id": "active", "type": "condition", "when": "contact.traits.n % 4 != 0", "yes": "push", "no": "done"},
        {"id": "push", "type": "send", "chain": ["push"], "content": {"push": {"text": "We miss you"}},
         "next": "paid"},
        {"id": "paid", "type": "wait_for_event", "event": "order_paid", "timeout_seconds": 86400, "next": "done",
         "timeout_next": "done"},
        {"id": "done", "type": "exit"}]}


def _seed(url: str, tag: str, n: int, segment: int) -> list[int]:
    """n contacts with a push token, and a segment_entered event each in outbox rows of 1000."""
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("""
            INSERT INTO contacts (user_id, traits)
            SELECT 'bench-j-' || %s || '-' || i, jsonb_build_object('n', i, 'push_token', 'tok-' || i)
            FROM generate_series(1, %s) i RETURNING id
        """, (tag, n)).fetchall()]
    _events(url, tag, ids, "segment_entered", {"segment_id": segment})
    return ids


def _events(url: str, tag: str, ids: list[int], name: str, properties: dict[str, Any]) -> None:
    """An event `name` for each contact, in outbox rows of 1000, as ingest or a segment refresh writes them."""
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        conn.execute("""
            WITH e AS (
                INSERT INTO events (contact_id, message_id, type, event, properties, context, timestamp)
                SELECT c, 'bench-j-' || %s || '-' || %s || '-' || c, 'track', %s, %s::jsonb, '{}', now()
                FROM unnest(%s::bigint[]) c RETURNING contact_id, id
            )
            INSERT INTO event_outbox (contact_ids, event_ids)
            SELECT array_agg(contact_id ORDER BY id), array_agg(id ORDER BY id)
            FROM (SELECT contact_id, id, (row_number() OVER (ORDER BY id) - 1) / 1000 AS part FROM e) x
            GROUP BY part ORDER BY part
        """, (tag, name, name, orjson.dumps(properties).decode(), ids))


def _cleanup(url: str, tag: str, ids: list[int], journey_id: int | None, consumers: list[str]) -> None:
    with psycopg.connect(plain_url(url), autocommit=True) as conn:
        if journey_id is not None:
            for table in ("journey_states", "journey_history", "journey_counts", "journey_versions"):
                conn.execute(f"DELETE FROM {table} WHERE journey_id = %s", (journey_id,))
            conn.execute("DELETE FROM journeys WHERE id = %s", (journey_id,))
            prefix = f"journey:{journey_id}:%"
            conn.execute("DELETE FROM delivery_attempts WHERE contact_id = ANY(%s) AND key LIKE %s", (ids, prefix))
            conn.execute("DELETE FROM delivery_plans WHERE contact_id = ANY(%s) AND key LIKE %s", (ids, prefix))
        conn.execute("DELETE FROM event_cursors WHERE consumer = ANY(%s)", (consumers,))
        conn.execute("DELETE FROM event_outbox WHERE contact_ids && %s::bigint[]", (ids,))
        conn.execute("DELETE FROM events WHERE contact_id = ANY(%s)", (ids,))
        conn.execute("DELETE FROM contacts WHERE id = ANY(%s)", (ids,))


async def _read_alone(sessions: async_sessionmaker[AsyncSession], reader: str, batch: int) -> float:
    """Events/s reading the outbox from `reader`'s cursor to its end, handling nothing: the consumers' limit."""
    started = time.perf_counter()
    read = 0
    while True:
        async with transaction(sessions) as s:
            events = await read_new_events(s, reader, limit=batch)
            if not events:
                break
            read += len(events)
            await advance_cursor(s, reader, events[-1].position)
    return read / (time.perf_counter() - started)


async def run(ctx: BenchContext, n: int, batch: int, send_batch: int) -> BenchResult:
    url = ctx.settings.database_url or ""
    tag = uuid.uuid4().hex[:8]
    segment = 2**40 + int(tag, 16) % 2**20  # a segment id no real segment has
    engine = make_engine(url, pool_size=4)
    sessions = make_sessionmaker(engine)
    channel = RecordingChannel()
    delivery = DeliveryService(sessions, {"push": channel}, DeliveryPolicy())
    journey_id: int | None = None
    ids: list[int] = []
    reader = f"bench-journey-read-{tag}"
    try:
        async with transaction(sessions) as s:
            journey_id = (await definitions.create_journey(s, f"bench {tag}", _graph(segment))).id
            await definitions.publish(s, journey_id)
        async with transaction(sessions) as s:  # the reader starts where the journey's cursor does
            await s.execute(text("""
                INSERT INTO event_cursors (consumer, xid, outbox_id)
                SELECT :r, xid, outbox_id FROM event_cursors WHERE consumer = :c
            """), {"r": reader, "c": definitions.consumer(journey_id)})
        with ctx.status(f"Creating {n:,} contacts and their segment_entered events (not timed)…"):
            ids = await asyncio.to_thread(_seed, url, tag, n, segment)

        with ctx.status("Reading the events from the outbox alone (the limit)…"):
            read_rate = await _read_alone(sessions, reader, batch)

        now = datetime.now(UTC)
        entered = waiting = 0
        with ctx.status(f"Entering {n:,} contacts into the journey and its 1-day wait…"):
            started = time.perf_counter()
            while True:
                async with transaction(sessions) as s:
                    consumed = await runtime.consume(s, journey_id, 1, now, limit=batch, policy=delivery.policy)
                    moved = await runtime.advance_due(s, journey_id, now, limit=batch, policy=delivery.policy)
                entered, waiting = entered + consumed.entered, waiting + moved.contacts
                if not consumed.events and not moved.contacts:
                    break
            entry_elapsed = time.perf_counter() - started
        entry_rate = entered / entry_elapsed if entry_elapsed else 0.0

        later = now + timedelta(days=1, seconds=1)
        advanced = 0
        outcome = Progress()
        with ctx.status("A day later: condition and send through the delivery service…"):
            started = time.perf_counter()
            # As run_journey does: sends claimed with their moves, several move batches' in one delivery call, sent
            # while the next batches move.
            async with Sending(delivery, later) as sending:
                while True:
                    async with transaction(sessions) as s:
                        moved = await runtime.advance_due(s, journey_id, later, limit=batch,
                                                          rendering=definitions.rendering(), policy=delivery.policy)
                    await sending.add(moved, send_batch)
                    advanced += moved.contacts
                    if moved.contacts < batch:
                        break
                await sending.flush()
            outcome = sending.progress
            send_elapsed = time.perf_counter() - started
        send_rate = channel.sent / send_elapsed if send_elapsed else 0.0

        with ctx.status(f"Creating {n:,} order_paid events, {channel.sent:,} of them awaited (not timed)…"):
            await asyncio.to_thread(_events, url, tag, ids, "order_paid", {"total": 100})
        with ctx.status("Reading them from the outbox alone…"):
            paid_read_rate = await _read_alone(sessions, reader, batch)
        matched = resumed = 0
        with ctx.status("Matching them to the contacts waiting for them…"):
            started = time.perf_counter()
            while True:
                async with transaction(sessions) as s:
                    consumed = await runtime.consume(s, journey_id, 1, later, limit=batch, policy=delivery.policy)
                matched, resumed = matched + consumed.events, resumed + consumed.resumed
                if not consumed.events:
                    break
            match_elapsed = time.perf_counter() - started
        match_rate = matched / match_elapsed if match_elapsed else 0.0
    finally:
        await engine.dispose()
        with ctx.status("Cleaning up…"):
            await asyncio.to_thread(_cleanup, url, tag, ids, journey_id,
                                    [reader] + ([definitions.consumer(journey_id)] if journey_id else []))
    return BenchResult(
        bench=NAME, value=entry_rate, unit="contacts/s", limit_name="outbox read alone", limit=read_rate,
        params={"n": n, "batch": batch, "send_batch": send_batch},
        rows=[("contacts entered", f"{entered:,}"), ("entry seconds", f"{entry_elapsed:.2f}"),
              ("sends/s after the wait (target ≥ 3,300)", f"{send_rate:,.0f}"),
              ("sends", f"{channel.sent:,}"),
              ("claimed / failed / suppressed",
               f"{outcome.claimed:,} / {outcome.failed:,} / {outcome.suppressed:,}"),
              ("advanced after the wait", f"{advanced:,}"),
              ("send phase seconds", f"{send_elapsed:.2f}"), ("entry target", "≥ 5,000 contacts/s"),
              ("wait-for-event: order_paid events/s matched", f"{match_rate:,.0f}"),
              ("… the same events read alone", f"{paid_read_rate:,.0f}/s"),
              ("contacts resumed by their event", f"{resumed:,}")],
    )
