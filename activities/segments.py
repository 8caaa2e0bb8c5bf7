"""Segment activities: full refresh of rule segments, the incremental consumer of new events and
trait changes (re-evaluates only the contacts they touched; membership changes of a segment that other
rules name touch their contacts too, which is how a manual list's edits reach the segments built on it),
and filling the Elasticsearch index in chunks of contact ids (the consumer reports an index that needs it).
The long-lived consumer follows changes inside one activity for minutes at a time (Temporal's pattern for
frequent polling), so idle seconds cost a cheap query each and no workflow history."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from domain.segments.rules import SEGMENT_EVENTS
from store.db import transaction
from store.events.outbox import OutboxEvent, advance_cursor, read_new_events
from store.segments.definitions import rule_references
from store.segments.refresh import refresh_contacts, refresh_scheduled
from store.segments.trait_changes import changed_contacts, save_watermark

if TYPE_CHECKING:
    from store.segments.es import ElasticsearchSegmentIndex

EVENTS_CONSUMER = "segments"
CONTACTS_WATERMARK = "segments:contacts"
# Trait changes are read up to this long before now, so a transaction still in flight is not skipped;
# anything slower is caught by the periodic full refresh.
SETTLE = timedelta(seconds=2)
ES_WARN_EVERY = 60.0  # seconds between two warnings that the Elasticsearch index is unreachable


@dataclass
class RefreshInput:
    time_based_only: bool = True


@dataclass
class RefreshResult:
    segments: int
    entered: int
    exited: int


@dataclass
class ConsumeInput:
    limit: int = 1000


@dataclass
class ConsumeResult:
    events: int
    contacts: int
    entered: int
    exited: int
    more: bool
    backfill: str | None = None  # an Elasticsearch index that is not completely filled


@dataclass
class FollowInput:
    batch_size: int = 1000
    poll_seconds: float = 1.0      # how often an idle consumer looks for new events and trait changes
    window_seconds: float = 300.0  # then it returns, so the workflow's history records progress now and then
    backfill_started: str | None = None  # an index the workflow has started filling: not reported again


@dataclass
class FollowResult:
    batches: int = 0   # batches that found something to do
    events: int = 0
    contacts: int = 0
    entered: int = 0
    exited: int = 0
    backfill: str | None = None  # returned early: this Elasticsearch index needs filling

    def add(self, batch: ConsumeResult) -> None:
        if batch.events or batch.contacts:
            self.batches += 1
        self.events, self.contacts = self.events + batch.events, self.contacts + batch.contacts
        self.entered, self.exited = self.entered + batch.entered, self.exited + batch.exited


@dataclass
class BackfillChunkInput:
    index: str
    limit: int = 20_000       # contacts per activity; the cursor is saved in the index after each chunk
    batch_size: int = 2000    # contacts per bulk request; a heartbeat carries the cursor after each


@dataclass
class BackfillChunkResult:
    indexed: int
    after: int          # the cursor once this chunk is done (contact id)
    started_from: int   # where this attempt began
    done: bool
    resumed: bool = False  # a retried attempt that began at its last heartbeat, past the saved cursor


class SegmentActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], elasticsearch_url: str | None = None, *,
                 index: str | None = None) -> None:
        self.sessions = sessions
        self._warned = -ES_WARN_EVERY
        self.es: ElasticsearchSegmentIndex | None = None
        if elasticsearch_url:  # the Elasticsearch client is imported only where it is configured (it takes ~0.3 s)
            from store.segments.es import DEFAULT_INDEX, ElasticsearchSegmentIndex

            self.es = ElasticsearchSegmentIndex(elasticsearch_url, index=index or DEFAULT_INDEX)

    @activity.defn
    async def refresh_segments(self, params: RefreshInput) -> RefreshResult:
        now = datetime.now(UTC)
        async with transaction(self.sessions) as session:
            changes = await refresh_scheduled(session, now, time_based_only=params.time_based_only)
        return RefreshResult(len(changes), sum(c.entered for c in changes.values()),
                             sum(c.exited for c in changes.values()))

    @activity.defn
    async def consume_changes(self, params: ConsumeInput) -> ConsumeResult:
        """One batch: new events after the cursor plus contacts whose traits changed, refreshed together."""
        return await self._consume(params.limit)

    @activity.defn
    async def follow_changes(self, params: FollowInput) -> FollowResult:
        """Consume batches as they come for about `window_seconds`, polling every `poll_seconds` while idle.
        Returns early when an Elasticsearch index needs a backfill the workflow has not started, and when the
        worker shuts down (the workflow's next call goes to another worker). Heartbeats carry the totals."""
        done = FollowResult()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + params.window_seconds
        async with heartbeating(lambda: asdict(done)):
            while True:
                batch = await self._consume(params.batch_size)
                done.add(batch)
                if batch.backfill and batch.backfill != params.backfill_started:
                    done.backfill = batch.backfill
                    return done
                left = deadline - loop.time()
                if left <= 0 or activity.is_worker_shutdown():
                    return done
                if not batch.more:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(activity.wait_for_worker_shutdown(), min(params.poll_seconds, left))

    async def _consume(self, limit: int) -> ConsumeResult:
        async with transaction(self.sessions) as session:
            batch = await read_new_events(session, EVENTS_CONSUMER, limit=limit)
            touched = await _touched_by(session, batch)
            traits = await changed_contacts(session, CONTACTS_WATERMARK, limit=limit, settle=SETTLE)
            touched |= traits.contacts
            changes = {}
            if touched:
                changes = await refresh_contacts(session, touched, datetime.now(UTC))
                if self.es is not None:  # keep the search index's documents in step with membership
                    await self.es.register_saved(session)
                    await self.es.index_contacts(session, sorted(touched))
            if batch:
                await advance_cursor(session, EVENTS_CONSUMER, batch[-1].position)
            if traits.watermark is not None:
                await save_watermark(session, CONTACTS_WATERMARK, traits.watermark)
        backfill = await self._unfilled_index()
        return ConsumeResult(
            events=len(batch), contacts=len(touched), entered=sum(c.entered for c in changes.values()),
            exited=sum(c.exited for c in changes.values()), more=len(batch) >= limit or traits.more,
            backfill=backfill,
        )

    async def _unfilled_index(self) -> str | None:
        """The Elasticsearch index if it needs filling (looked up at most every few seconds). An unreachable
        index is logged, not raised: Postgres membership must stay fresh while search is down."""
        if self.es is None:
            return None
        try:
            return None if await self.es.filled() else self.es.index
        except Exception as exc:  # noqa: BLE001 - any transport error: the next batch looks again
            now = time.monotonic()
            if now - self._warned >= ES_WARN_EVERY:  # an idle consumer polls every second: warn once a minute
                self._warned = now
                activity.logger.warning("Elasticsearch index %s not reachable: %s", self.es.index, exc)
            return None

    @activity.defn
    async def backfill_index_chunk(self, params: BackfillChunkInput) -> BackfillChunkResult:
        """Index the next chunk of contacts after the cursor saved in the index (or, for a retried attempt,
        after its last heartbeat on the same index), then save the cursor; mark the index filled at the end."""
        if self.es is None or self.es.index != params.index:
            raise ApplicationError(f"this worker does not serve Elasticsearch index {params.index!r} "
                                   "(ELASTICSEARCH_URL unset or another index)", non_retryable=True)
        es = self.es
        status = await es.backfill_status()
        if status.state == "missing":
            await es.ensure_index()
            status = await es.backfill_status()
        if status.complete:
            return BackfillChunkResult(0, status.after, status.after, done=True)
        after = status.after
        beat = (activity.info().heartbeat_details or [None])[0]
        if isinstance(beat, dict) and beat.get("generation") == status.generation:
            after = max(after, int(beat.get("after", 0)))
        started_from, resumed = after, after > status.after

        def heartbeat(done: int, cursor: int) -> None:
            activity.heartbeat({"generation": status.generation, "after": cursor, "indexed": done})

        async with self.sessions() as session:
            indexed, cursor, exhausted = await es.backfill_step(session, after, params.limit,
                                                                batch_size=params.batch_size, progress=heartbeat)
        if exhausted:
            await es.finish_backfill()
        else:
            await es.mark("pending", cursor)
        return BackfillChunkResult(indexed, cursor, started_from, done=exhausted, resumed=resumed)


async def _touched_by(session: AsyncSession, batch: Sequence[OutboxEvent]) -> set[int]:
    """Contacts whose events can change a rule segment's membership. Our own segment_entered/exited events
    count only for segments that other rules name: the rest would re-evaluate what was just evaluated
    (a full refresh that moves a million members would otherwise be re-checked contact by contact)."""
    named: set[int] | None = None
    touched: set[int] = set()
    for event in batch:
        if event.type == "track" and event.event in SEGMENT_EVENTS:
            if named is None:
                named = set().union(*(await rule_references(session)).values())
            if event.properties.get("segment_id") not in named:
                continue
        touched.add(event.contact_id)
    return touched
