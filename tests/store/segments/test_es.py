"""The Elasticsearch SegmentIndex beyond the shared rule table: search_after paging, incremental
re-indexing after a new event, and event streams a rule needs being indexed on first use."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.segments.rules import All, Condition, FieldRef, Node, parse_rule
from store.db import transaction
from store.segments.es import ElasticsearchSegmentIndex
from store.segments.index import PostgresSegmentIndex
from store.segments.refresh import refresh_rollup


@pytest.fixture
async def es(elasticsearch_url: str) -> AsyncIterator[ElasticsearchSegmentIndex]:
    index = ElasticsearchSegmentIndex(elasticsearch_url, index=f"nudge-test-{uuid.uuid4().hex[:8]}")
    yield index
    await index.drop()
    await index.close()


def _mine(world: Any, raw: dict[str, Any]) -> Node:
    return All((Condition(FieldRef("traits", ("tag",), "json"), "eq", world.tag), parse_rule(raw)))


async def test_pages_with_search_after_cover_every_member_once(
    es: ElasticsearchSegmentIndex, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    rule = _mine(segment_world, {"field": "email", "op": "exists"})
    async with sessions() as s:
        assert await es.index_contacts(s, segment_world.ids) == len(segment_world.ids)
        pages, after = [], 0
        while page := await es.page(s, rule, segment_world.now, after=after, limit=3):
            pages.append(page)
            after = page[-1]
        want = await PostgresSegmentIndex().page(s, rule, segment_world.now, after=0, limit=100)
    assert [i for p in pages for i in p] == want
    assert all(len(p) == 3 for p in pages[:-1]) and len(pages) >= 3


async def test_reindexing_a_touched_contact_picks_up_its_new_event(
    es: ElasticsearchSegmentIndex, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    rule = _mine(segment_world, {"event": "refund_issued", "within_last": "7d"})
    target = segment_world.ids[3]
    async with sessions() as s:
        await es.index_contacts(s, segment_world.ids, rules=[rule])
        assert await es.count(s, rule, segment_world.now) == 0
    async with transaction(sessions) as s:
        await s.execute(text("""
            WITH e AS (INSERT INTO events (contact_id, message_id, type, event, properties, timestamp)
                       VALUES (:c, :m, 'track', 'refund_issued', CAST(:p AS jsonb), now())
                       RETURNING contact_id, timestamp)
            INSERT INTO contact_event_daily (contact_id, event, day, count, first_at, last_at)
            SELECT contact_id, 'refund_issued', (timestamp AT TIME ZONE 'UTC')::date, 1, timestamp, timestamp FROM e
        """), {"c": target, "m": f"refund-{uuid.uuid4().hex}", "p": json.dumps({})})
        await refresh_rollup(s, [target])  # what the changes consumer does before re-indexing
    async with sessions() as s:
        await es.index_contacts(s, [target])
        assert await es.page(s, rule, segment_world.now, after=0, limit=10) == [target]


async def test_a_rule_with_a_new_event_filter_is_indexed_on_first_use(
    es: ElasticsearchSegmentIndex, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        await es.index_contacts(s, segment_world.ids)  # no rules registered yet: no event streams
        rule = _mine(segment_world, {"event": "order_paid", "where_cel": "event.properties.amount >= 300"})
        got = await es.page(s, rule, segment_world.now, after=0, limit=100)
        assert got == await PostgresSegmentIndex().page(s, rule, segment_world.now, after=0, limit=100)
        assert len(got) == 3


async def test_a_rejected_document_is_reported_not_silently_dropped(
    elasticsearch_url: str, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    from store.segments.es import MAPPINGS, IndexingFailed

    index = ElasticsearchSegmentIndex(elasticsearch_url, index=f"nudge-test-{uuid.uuid4().hex[:8]}")
    # An index someone created by hand with a mapping that cannot take an email address.
    mappings = MAPPINGS | {"properties": MAPPINGS["properties"] | {"email": {"type": "long"}}}
    await index.client.indices.create(index=index.index, mappings=mappings)
    try:
        async with sessions() as s:
            with pytest.raises(IndexingFailed, match="rejected"):
                await index.index_contacts(s, segment_world.ids)
            without_email = [cid for cid in segment_world.ids if segment_world.facts[cid].fields["email"] is None]
            rule = _mine(segment_world, {"field": "email", "op": "not_exists"})
            assert await index.page(s, rule, segment_world.now, after=0, limit=100) == without_email
    finally:
        await index.drop()
        await index.close()


async def test_forgetting_an_erased_contact_removes_its_document(
    es: ElasticsearchSegmentIndex, segment_world: Any, sessions: async_sessionmaker[AsyncSession],
) -> None:
    rule = _mine(segment_world, {"field": "email", "op": "exists"})
    gone = segment_world.ids[0]
    async with sessions() as s:
        await es.index_contacts(s, segment_world.ids)
        before = await es.page(s, rule, segment_world.now, after=0, limit=100)
        await es.forget([gone, 10**12])  # a contact that was never indexed is already forgotten
        assert await es.page(s, rule, segment_world.now, after=0, limit=100) == [c for c in before if c != gone]
        assert not await es.client.exists(index=es.index, id=str(gone))
