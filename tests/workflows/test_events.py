"""The daily events prune on a real Temporal worker: outbox rows go only once every consumer has read them
and they are past retention, dedupe rows past the window (a replay of such a message is then new), old
segment transitions; young rows stay. The schedule exists once, and runs replay deterministically."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, ScheduleActionStartWorkflow
from temporalio.worker import Replayer

from domain.events import Event, parse_batch
from store.contacts.identities import find_contact
from store.db import transaction
from store.events.insert import IngestResult
from store.events.outbox import advance_cursor, read_new_events
from store.ingest import ingest
from store.segments.definitions import create_segment
from store.segments.membership import add_members, remove_members
from workflows.events import PRUNE_SCHEDULE, TASK_QUEUE, EventsPruneWorkflow, PruneInput, ensure_schedules
from workflows.schedules import NUDGE_KIND


def _batch(items: list[dict]) -> list[Event]:
    return parse_batch({"batch": items}, received_at=datetime.now(UTC), new_id=lambda: uuid.uuid4().hex)


async def _ingest(sessions: async_sessionmaker[AsyncSession], items: list[dict]) -> IngestResult:
    async with transaction(sessions) as s:
        return await ingest(s, _batch(items))


async def _count(sessions: async_sessionmaker[AsyncSession], sql: str, **params: object) -> int:
    async with sessions() as s:
        return int(await s.scalar(text(sql), params) or 0)


async def _catch_up_every_consumer(sessions: async_sessionmaker[AsyncSession], segments: Any) -> None:
    """The segments consumer is the deployment's long-lived workflow; other (test) consumers just read to the end."""
    await segments.caught_up()
    async with transaction(sessions) as s:
        consumers = (await s.scalars(text("SELECT consumer FROM event_cursors WHERE consumer <> 'segments'"))).all()
        for consumer in consumers:
            while batch := await read_new_events(s, consumer, limit=100_000):
                await advance_cursor(s, consumer, batch[-1].position)


async def test_ensuring_the_prune_schedule_twice_creates_it_once(temporal_client: Client) -> None:
    await ensure_schedules(temporal_client)
    await ensure_schedules(temporal_client)
    ids = [s.id async for s in await temporal_client.list_schedules()]
    assert ids.count(PRUNE_SCHEDULE) == 1
    action = (await temporal_client.get_schedule_handle(PRUNE_SCHEDULE).describe()).schedule.action
    assert isinstance(action, ScheduleActionStartWorkflow) and action.task_queue == TASK_QUEUE
    assert action.typed_search_attributes.get(NUDGE_KIND) == "events-prune"  # the runs are labelled in the UI


async def test_prune_deletes_only_what_is_old_and_read_by_everyone(
    temporal_client: Client, worker: None, sessions: async_sessionmaker[AsyncSession], segment_consumer: Any,
) -> None:
    tag = uuid.uuid4().hex[:10]
    user = f"prune-{tag}"
    old_ids = [f"{tag}-old-{i}" for i in range(5)]
    young_ids = [f"{tag}-young-{i}" for i in range(2)]
    assert (await _ingest(sessions, [{"type": "track", "userId": user, "event": "tap", "messageId": m}
                                     for m in old_ids])).inserted == 5
    async with transaction(sessions) as s:
        contact = await find_contact(s, "user_id", user)
        old_outbox = list((await s.scalars(text("SELECT id FROM event_outbox WHERE :c = ANY(contact_ids)"),
                                           {"c": contact})).all())
        # Age what was just written: outbox rows past the 7-day retention. Remembered message ids (what an
        # erasure leaves, see test_erasure): five past the 30-day window, two inside it.
        await s.execute(text("UPDATE event_outbox SET created_at = now() - interval '8 days' WHERE id = ANY(:ids)"),
                        {"ids": old_outbox})
        await s.execute(text("INSERT INTO event_dedupe (message_id, received_at) SELECT m, now() - interval '31 days'"
                             " FROM unnest(CAST(:old AS text[])) m UNION ALL SELECT m, now()"
                             " FROM unnest(CAST(:young AS text[])) m"),
                        {"old": [f"gone-{m}" for m in old_ids], "young": [f"gone-{m}" for m in young_ids]})
        # Two segment transitions of this contact: one past the 90-day retention, one recent.
        segment = await create_segment(s, name=f"{tag} list", kind="manual", rule=None)
        await add_members(s, segment, [contact], datetime.now(UTC))
        await remove_members(s, segment, [contact], datetime.now(UTC))
        await s.execute(text("UPDATE segment_transitions SET at = now() - interval '91 days'"
                             " WHERE segment_id = :s AND kind = 'segment_entered'"), {"s": segment.id})
        # A consumer that has read nothing yet holds every outbox row back.
        await s.execute(text("INSERT INTO event_cursors (consumer) VALUES (:c)"), {"c": f"test-stalled-{tag}"})
    assert (await _ingest(sessions, [{"type": "track", "userId": user, "event": "tap", "messageId": m}
                                     for m in young_ids])).inserted == 2
    assert old_outbox

    run = await temporal_client.start_workflow(EventsPruneWorkflow.run, PruneInput(chunk=2),
                                               id=f"test-prune-{tag}-1", task_queue=TASK_QUEUE)
    totals = await run.result()
    assert totals.dedupe >= 5 and totals.transitions >= 1 and totals.chunks >= 3 + 1 + 1
    assert await _count(sessions, "SELECT count(*) FROM event_dedupe WHERE message_id = ANY(:m)",
                        m=[f"gone-{m}" for m in old_ids]) == 0
    assert await _count(sessions, "SELECT count(*) FROM event_dedupe WHERE message_id = ANY(:m)",
                        m=[f"gone-{m}" for m in young_ids]) == 2
    kinds = await _count(sessions, "SELECT count(*) FROM segment_transitions WHERE segment_id = :s", s=segment.id)
    assert kinds == 1, "the recent exit stays"
    assert await _count(sessions, "SELECT count(*) FROM event_outbox WHERE id = ANY(:ids)", ids=old_outbox) == len(
        old_outbox), "a consumer that has not read them holds them"

    # Once every consumer has read past them, the old rows go; the recent ones stay.
    async with transaction(sessions) as s:
        await s.execute(text("DELETE FROM event_cursors WHERE consumer = :c"), {"c": f"test-stalled-{tag}"})
    await _catch_up_every_consumer(sessions, segment_consumer)
    again = await temporal_client.start_workflow(EventsPruneWorkflow.run, PruneInput(chunk=2),
                                                 id=f"test-prune-{tag}-2", task_queue=TASK_QUEUE)
    assert (await again.result()).outbox >= len(old_outbox)
    assert await _count(sessions, "SELECT count(*) FROM event_outbox WHERE id = ANY(:ids)", ids=old_outbox) == 0
    assert await _count(sessions, "SELECT count(*) FROM event_outbox WHERE :c = ANY(contact_ids)", c=contact) >= 1
    # Events themselves are never pruned.
    assert await _count(sessions, "SELECT count(*) FROM events WHERE contact_id = :c AND event = 'tap'", c=contact) == 7

    # A stored event refuses its replay for as long as it is kept, however old; pruning forgets only erased ids.
    replay = [{"type": "track", "userId": user, "event": "tap", "messageId": m} for m in old_ids[:1] + young_ids]
    assert (await _ingest(sessions, replay)).inserted == 0

    replayer = Replayer(workflows=[EventsPruneWorkflow])
    for handle in (run, again):
        await replayer.replay_workflow(await handle.fetch_history())


async def test_a_run_with_nothing_to_prune_deletes_nothing(
    temporal_client: Client, worker: None, sessions: async_sessionmaker[AsyncSession],
) -> None:
    before = await _count(sessions, "SELECT count(*) FROM event_dedupe")
    long_ago = datetime.now(UTC) - timedelta(days=3650)  # every cutoff lies before anything was written
    totals = await temporal_client.execute_workflow(EventsPruneWorkflow.run, PruneInput(now=long_ago),
                                                    id=f"test-prune-none-{uuid.uuid4().hex[:8]}",
                                                    task_queue=TASK_QUEUE)
    assert (totals.outbox, totals.dedupe, totals.transitions, totals.chunks) == (0, 0, 0, 3)
    assert await _count(sessions, "SELECT count(*) FROM event_dedupe") >= before
