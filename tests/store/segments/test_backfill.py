"""Filling the Elasticsearch segment index: the fill marker, counts answered by Postgres while an index is
being filled, the backfill workflow started by the changes consumer, a worker killed mid-backfill that
resumes from its cursor, and `nudge segments reindex`. (Here rather than under tests/workflows because the
noida-db fixture lives in this directory's conftest.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import AsyncElasticsearch
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

import store.segments.es as segments_es
from activities.segments import SegmentActivities
from domain.segments.rules import All, Condition, FieldRef, Node, parse_rule
from nudge.embedded import temporal_binary
from store.db import transaction
from store.segments.es import ElasticsearchSegmentIndex, reindex
from store.segments.index import PostgresSegmentIndex
from workflows.segments.backfill import (
    BackfillInput,
    BackfillProgress,
    SegmentIndexBackfillWorkflow,
    backfill_workflow_id,
)
from workflows.segments.changes import (
    ChangesInput,
    ConsumerInput,
    SegmentChangesConsumerWorkflow,
    SegmentChangesWorkflow,
)

NUDGE = str(Path(sys.executable).parent / "nudge")


def _name() -> str:
    return f"nudge-test-fill-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def index_name(elasticsearch_url: str) -> AsyncIterator[str]:
    name = _name()
    yield name
    client = AsyncElasticsearch(elasticsearch_url, node_class="httpxasync")
    await client.options(ignore_status=404).indices.delete(index=name)
    await client.close()


async def _documents(url: str, index: str) -> int:
    client = AsyncElasticsearch(url, node_class="httpxasync")
    try:
        await client.indices.refresh(index=index)
        return int((await client.count(index=index))["count"])
    finally:
        await client.close()


async def _contacts(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return int(await s.scalar(text("SELECT count(*) FROM contacts")) or 0)


def _mine(world: Any, raw: dict[str, Any]) -> Node:
    return All((Condition(FieldRef("traits", ("tag",), "json"), "eq", world.tag), parse_rule(raw)))


async def test_a_new_index_is_pending_until_filled_and_an_unmarked_one_counts_as_unfilled(
    elasticsearch_url: str, index_name: str, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    es = ElasticsearchSegmentIndex(elasticsearch_url, index=index_name)
    try:
        assert (await es.backfill_status()).state == "missing"
        await es.ensure_index()
        status = await es.backfill_status()
        assert (status.state, status.after) == ("pending", 0) and status.generation
        async with sessions() as s:
            indexed, cursor, exhausted = await es.backfill_step(s, 0, 3, batch_size=2)
        assert (indexed, exhausted) == (3, False)
        await es.mark("pending", cursor)
        assert (await es.backfill_status()).after == cursor
        await es.finish_backfill()
        assert (await es.backfill_status()).complete
        # An index created before the marker existed (the -v2 rename) has no _meta: never filled.
        await es.drop()
        await es.client.indices.create(index=index_name, mappings=segments_es.MAPPINGS)
        assert (await es.backfill_status()).state == "pending"
    finally:
        await es.close()


async def test_counts_come_from_postgres_while_the_index_is_being_filled(
    elasticsearch_url: str, index_name: str, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
    database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(segments_es, "STATUS_TTL", 0.0)
    es = ElasticsearchSegmentIndex(elasticsearch_url, index=index_name, fallback_while_filling=True)
    rule = _mine(segment_world, {"field": "traits.plan", "op": "eq", "value": "pro"})
    try:
        async with sessions() as s:
            want = await PostgresSegmentIndex().count(s, rule, segment_world.now)
            want_page = await PostgresSegmentIndex().page(s, rule, segment_world.now, after=0, limit=100)
            await es.index_contacts(s, segment_world.ids[:1])  # a touched contact: the index is partial
            assert await es.count(s, rule, segment_world.now) == want == 4
            assert await es.page(s, rule, segment_world.now, after=0, limit=100) == want_page
            assert es.name == "postgres"  # what the preview reports as its backend
            # The partial index on its own would have missed members: the fallback is not a formality.
            assert int((await es.client.count(index=index_name, query=segments_es.compile_query(
                rule, segment_world.now)))["count"]) == 1
        assert await reindex(database_url, elasticsearch_url, index=index_name) == await _contacts(sessions)
        async with sessions() as s:
            assert await es.count(s, rule, segment_world.now) == want
            assert es.name == "elasticsearch"
            assert await es.page(s, rule, segment_world.now, after=0, limit=100) == want_page
    finally:
        await es.close()


async def test_explicitly_named_indexes_answer_themselves(elasticsearch_url: str, index_name: str) -> None:
    """Tests and benchmarks fill their own indexes; only the deployment's index falls back by default."""
    named = ElasticsearchSegmentIndex(elasticsearch_url, index=index_name)
    default = ElasticsearchSegmentIndex(elasticsearch_url)
    try:
        assert named.fallback is None and named.name == "elasticsearch"
        assert isinstance(default.fallback, PostgresSegmentIndex) and default.name == "postgres"
    finally:
        await named.close()
        await default.close()


async def test_the_changes_consumer_starts_one_backfill_that_fills_the_index(
    elasticsearch_url: str, index_name: str, temporal_client: Client, sessions: async_sessionmaker[AsyncSession],
    segment_world: Any,
) -> None:
    queue = f"test-backfill-{uuid.uuid4().hex[:8]}"
    activities = SegmentActivities(sessions, elasticsearch_url, index=index_name)
    worker = Worker(temporal_client, task_queue=queue,
                    workflows=[SegmentChangesConsumerWorkflow, SegmentChangesWorkflow, SegmentIndexBackfillWorkflow],
                    activities=[activities.follow_changes, activities.consume_changes, activities.backfill_index_chunk])
    consumer_id, one_shot_id = f"test-consumer-{queue}", f"test-changes-{queue}"
    async with worker:
        # The long-lived consumer and a one-shot run an upgrade left in flight both find the index unfilled;
        # one backfill runs.
        consumer = await temporal_client.start_workflow(
            SegmentChangesConsumerWorkflow.run, ConsumerInput(batch_size=50, poll_seconds=0.1, window_seconds=1),
            id=consumer_id, task_queue=queue)
        one_shot = await temporal_client.execute_workflow(SegmentChangesWorkflow.run, ChangesInput(batch_size=50),
                                                          id=one_shot_id, task_queue=queue)
        assert one_shot.backfill == index_name
        for _ in range(100):
            if (await consumer.query(SegmentChangesConsumerWorkflow.progress)).backfill == index_name:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the consumer did not report the unfilled index")
        backfill = temporal_client.get_workflow_handle(backfill_workflow_id(index_name), result_type=BackfillProgress)
        progress = await backfill.result()
        assert progress.done and progress.indexed == await _contacts(sessions) and progress.resumed == 0
        assert (await activities.es.backfill_status()).complete  # type: ignore[union-attr]
        await asyncio.sleep(2.5)  # a few more steps of the consumer: filled, nothing more to start
        runs = [w async for w in temporal_client.list_workflows(f"WorkflowId = '{backfill_workflow_id(index_name)}'")]
        assert len(runs) == 1
        await consumer.terminate("test over")
    assert await _documents(elasticsearch_url, index_name) == await _contacts(sessions)
    replayer = Replayer(workflows=[SegmentChangesConsumerWorkflow, SegmentChangesWorkflow,
                                   SegmentIndexBackfillWorkflow])
    for wid in (consumer_id, one_shot_id, backfill_workflow_id(index_name)):
        await replayer.replay_workflow(await temporal_client.get_workflow_handle(wid).fetch_history())
    await activities.es.close()  # type: ignore[union-attr]


def _spawn(database_url: str, temporal: str, es_url: str, index: str, queue: str) -> subprocess.Popen[bytes]:
    script = str(Path(__file__).parent / "backfill_worker.py")
    return subprocess.Popen([sys.executable, script, database_url, temporal, es_url, index, queue],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _heartbeat_cursor(client: Client, handle: Any) -> int:
    """The cursor the server holds for the running chunk (from its last heartbeat), 0 if none yet."""
    converter = client.data_converter
    for pending in (await handle.describe()).raw_description.pending_activities:
        if pending.heartbeat_details.payloads:
            (beat,) = await converter.decode(pending.heartbeat_details.payloads)
            return int(beat["after"])
    return 0


async def test_a_worker_killed_mid_backfill_resumes_from_its_cursor(
    elasticsearch_url: str, index_name: str, sessions: async_sessionmaker[AsyncSession], database_url: str,
) -> None:
    async with transaction(sessions) as s:
        await s.execute(text("INSERT INTO contacts (user_id) SELECT 'fill-' || i FROM generate_series(1, 4000) i"))
    total = await _contacts(sessions)
    # Its own Temporal server, so the session's in-process worker cannot take this backfill's tasks.
    env = await WorkflowEnvironment.start_local(dev_server_existing_path=temporal_binary(),
                                                dev_server_log_level="error")
    temporal = env.client.service_client.config.target_host
    queue = f"fill-{uuid.uuid4().hex[:8]}"
    es = ElasticsearchSegmentIndex(elasticsearch_url, index=index_name)
    first = _spawn(database_url, temporal, elasticsearch_url, index_name, queue)
    second = None
    try:
        handle = await env.client.start_workflow(
            SegmentIndexBackfillWorkflow.run,
            BackfillInput(index_name, chunk=total + 1, batch_size=50, heartbeat_seconds=2),
            id=backfill_workflow_id(index_name), task_queue=queue)
        beat = 0
        for _ in range(3000):  # wait until the server holds a heartbeat cursor inside the (only) chunk
            beat = await _heartbeat_cursor(env.client, handle)
            if beat:
                break
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        status = await es.backfill_status()
        assert beat > 0 and status.state == "pending", "the worker must die in the middle of the backfill"
        assert status.after == 0  # nothing saved yet: only the heartbeat knows where the chunk got to

        second = _spawn(database_url, temporal, elasticsearch_url, index_name, queue)
        progress: BackfillProgress = await asyncio.wait_for(handle.result(), timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        await env.shutdown()
    assert progress.done and progress.resumed == 1
    # The retried attempt began at the heartbeat (or a later one sent just before the kill), not at zero.
    async with sessions() as s:
        after_beat = int(await s.scalar(text("SELECT count(*) FROM contacts WHERE id > :b"), {"b": beat}) or 0)
    assert progress.indexed <= after_beat < total
    assert await _documents(elasticsearch_url, index_name) == total
    assert (await es.backfill_status()).complete
    await es.close()


def _cli(args: list[str], database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "ELASTICSEARCH_URL"}
    full |= {"DATABASE_URL": database_url, "COLUMNS": "200", **env}
    return subprocess.run([NUDGE, *args], env=full, capture_output=True, text=True, timeout=120)


async def test_reindex_command_fills_the_index_and_refuses_without_elasticsearch(
    elasticsearch_url: str, index_name: str, sessions: async_sessionmaker[AsyncSession], database_url: str,
    segment_world: Any,
) -> None:
    refused = _cli(["segments", "reindex", "--index", index_name], database_url)
    assert refused.returncode == 1 and "ELASTICSEARCH_URL is not set" in refused.stdout
    es = ElasticsearchSegmentIndex(elasticsearch_url, index=index_name)
    try:
        assert (await es.backfill_status()).state == "missing"  # nothing was created
        done = _cli(["segments", "reindex", "--drop", "--index", index_name], database_url,
                    ELASTICSEARCH_URL=elasticsearch_url)
        assert done.returncode == 0, done.stdout + done.stderr
        total = await _contacts(sessions)
        assert f"{total:,} contacts indexed into {index_name} (dropped first)" in done.stdout
        assert (await es.backfill_status()).complete
        assert await _documents(elasticsearch_url, index_name) == total
    finally:
        await es.close()
