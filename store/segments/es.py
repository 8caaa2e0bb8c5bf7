"""The Elasticsearch SegmentIndex: contacts indexed with their aggregates, rules compiled to query DSL.

Production uses Elasticsearch 8 (see docker-compose.yml); tests run against noida-db. Postgres stays the
system of record and keeps materialised membership; this index answers counts and pages of rules on
large audiences. A contact document holds its columns, traits split by JSON type (`ts.*` keyword,
`tn.*` double, `tb.*` boolean, `tp` the paths present) so comparisons stay type-strict as in Postgres,
identities, scores, current segments, and for every event stream a rule uses (event name + `where`)
the total count and the UTC days of its latest K occurrences (`ev.<stream>.d1..dK`): "at least N in the
window" is then exactly "the N-th latest day is inside the window".

Traits are schemaless and differ between contacts, so a trait field's name is its whole path, encoded
(`trait_key`: `addr/city`), never a nested object: `addr` may be a string for one contact and an object
for another, `tags` a list of strings or of objects, a key may contain a dot, and none of that can make
two documents disagree about a field's type (a mapping conflict rejects the second document). Date
detection is off, so a string that looks like a date stays a keyword next to one that does not. A rule
compares with the field of its value's JSON type, as the SQL/JSON path does in Postgres.

Filling: the index only learns about contacts that are touched, so a fresh index (a new deployment, a
renamed index) is filled by a backfill (`backfill_step`, driven by `SegmentIndexBackfillWorkflow` or
`nudge segments reindex`). Its state lives in the index's own `_meta` (`pending` + the contact-id cursor, or
`complete`), so dropping the index drops the state with it and an index without the marker (created before
it existed) counts as never filled. While the deployment's index is not complete, counts and pages are
answered by Postgres instead (same results, see `fallback_while_filling`).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.segments.rules import (
    MAX_WINDOW_COUNT,
    NEGATIONS,
    All,
    AnyOf,
    Condition,
    Count,
    EventCondition,
    InSegment,
    Node,
    Not,
    Relative,
    event_conditions,
    parse_rule,
    resolve,
    resolve_day,
    window_start,
)
from store.db import make_engine, make_sessionmaker
from store.segments.index import PostgresSegmentIndex
from store.segments.models import Segment
from store.segments.sql import _Compiler

K = MAX_WINDOW_COUNT + 1
DEFAULT_INDEX = "nudge-contacts-v2"  # v2: flat trait paths, no date detection (v1 documents conflict)
BATCH = 2000
META = "nudge_backfill"  # key in the index mapping's _meta: {"state": "pending" | "complete", "after": id}
STATUS_TTL = 5.0  # seconds a looked-up backfill state is trusted by the query path
# Lucene refuses terms over 32766 bytes (and with them the whole document); longer strings are kept in the
# source but not searchable.
KEYWORD_LIMIT = 8191
MAPPINGS: dict[str, Any] = {
    "date_detection": False,
    "numeric_detection": False,
    "dynamic_templates": [
        {"trait_strings": {"path_match": "ts.*", "match_mapping_type": "string",
                           "mapping": {"type": "keyword", "ignore_above": KEYWORD_LIMIT}}},
        {"trait_longs": {"path_match": "tn.*", "match_mapping_type": "long", "mapping": {"type": "double"}}},
        {"trait_doubles": {"path_match": "tn.*", "match_mapping_type": "double", "mapping": {"type": "double"}}},
        {"trait_booleans": {"path_match": "tb.*", "match_mapping_type": "boolean", "mapping": {"type": "boolean"}}},
        {"identities": {"path_match": "idn.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}},
        {"event_days": {"path_match": "ev.*", "match_mapping_type": "string",
                        "mapping": {"type": "date", "format": "yyyy-MM-dd"}}},
        {"event_totals": {"path_match": "evn.*", "mapping": {"type": "long"}}},
    ],
    "properties": {
        "id": {"type": "long"}, "user_id": {"type": "keyword"}, "email": {"type": "keyword"},
        "phone": {"type": "keyword"}, "timezone": {"type": "keyword"}, "created_at": {"type": "date"},
        "updated_at": {"type": "date"}, "last_seen_at": {"type": "date"}, "tp": {"type": "keyword"},
        "segments": {"type": "long"},
        "sc": {"properties": {
            "lead_score": {"type": "double"}, "lifecycle_stage": {"type": "keyword"}, "rfm_tier": {"type": "keyword"},
            "recency_days": {"type": "double"}, "frequency": {"type": "double"}, "monetary": {"type": "double"},
            "churn_risk": {"type": "double"}}},
    },
}
REGEX_SPECIAL = set(".?+*|{}[]()\"\\#@&<>~^$-")
MATCH_ALL: dict[str, Any] = {"match_all": {}}
MATCH_NONE: dict[str, Any] = {"bool": {"must_not": [MATCH_ALL]}}
ESCAPED = set("%./")  # the escape character, Elasticsearch's object separator, and the path separator


class IndexingFailed(RuntimeError):
    """Elasticsearch rejected documents; the rest of the batch was indexed. Raised so a count is never
    silently missing someone (the caller's retry re-sends the whole batch, which is idempotent)."""


def trait_key(path: Sequence[str]) -> str:
    """A trait path as one field name: segments joined by `/`, with `%`, `.`, `/` and whitespace
    percent-encoded (UTF-8), so distinct paths never share a name and no name nests or is blank."""
    return "/".join("".join("".join(f"%{b:02X}" for b in ch.encode()) if ch in ESCAPED or ch.isspace() else ch
                            for ch in segment) for segment in path)


def _status(error: Any) -> int | None:
    """The HTTP status of one failed bulk item (as async_bulk reports it)."""
    for item in error.values() if isinstance(error, dict) else ():
        if isinstance(item, dict) and "status" in item:
            return int(item["status"])
    return None


def _check(errors: Sequence[Any], *, missing_ok: tuple[str, ...] = ("delete",)) -> None:
    """Raise for failed bulk items, except 404s of the operations named in `missing_ok` (deleting a document
    that is not there; adding streams to a contact that is not indexed yet, which gets them when it is)."""
    failed = [e for e in errors if not (_status(e) == 404 and any(op in e for op in missing_ok))]
    if failed:
        raise IndexingFailed(f"Elasticsearch rejected {len(failed)} document operation(s); first: {failed[0]}")


@dataclass(frozen=True)
class Backfill:
    """Where filling the index stands: `missing` (no index), `pending` (contacts up to id `after` are
    indexed) or `complete`. `generation` is the index's uuid: a cursor is only valid for the index it was
    taken on (a dropped and re-created index starts again)."""

    state: str
    after: int = 0
    generation: str = ""

    @property
    def complete(self) -> bool:
        return self.state == "complete"


def _regex_literal(value: str) -> str:
    return "".join(("\\" + ch if ch in "[]\\^-" else f"[{ch}]") if ch in REGEX_SPECIAL else ch for ch in value)


def _not(query: dict[str, Any]) -> dict[str, Any]:
    return {"bool": {"must_not": [query]}}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


class QueryCompiler:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def node(self, node: Node) -> dict[str, Any]:
        if isinstance(node, All):
            return {"bool": {"filter": [self.node(n) for n in node.items]}}
        if isinstance(node, AnyOf):
            return {"bool": {"should": [self.node(n) for n in node.items], "minimum_should_match": 1}}
        if isinstance(node, Not):
            return _not(self.node(node.item))
        if isinstance(node, InSegment):
            return {"term": {"segments": node.segment_id}}
        if isinstance(node, EventCondition):
            return self.event(node)
        return self.condition(node)

    def condition(self, node: Condition) -> dict[str, Any]:
        op = NEGATIONS.get(node.op, node.op)
        positive = self.positive(node, op)
        return _not(positive) if op != node.op else positive

    def field(self, node: Condition, value: Any) -> str:
        ref = node.field
        if ref.root == "traits":
            kind = "tb" if isinstance(value, bool) else "tn" if isinstance(value, int | float) else "ts"
            return f"{kind}.{trait_key(ref.path)}"
        if ref.root == "identities":
            return f"idn.{ref.path[0]}"
        if ref.root == "scores":
            return f"sc.{ref.path[0]}"
        return ref.path[0]

    def positive(self, node: Condition, op: str) -> dict[str, Any]:
        ref, value = node.field, node.value
        if op == "exists":
            return ({"term": {"tp": trait_key(ref.path)}} if ref.root == "traits"
                    else {"exists": {"field": self.field(node, "")}})
        if ref.kind == "datetime":
            if op == "between":
                lo, hi = (resolve(v, self.now) for v in value)
                return {"range": {ref.path[0]: {"gte": _iso(lo), "lte": _iso(hi)}}}
            moment = resolve(Relative(value.seconds) if op == "within_last" else value, self.now)
            bound = {"before": "lt", "after": "gt", "within_last": "gte"}[op]
            return {"range": {ref.path[0]: {bound: _iso(moment)}}}
        if op == "in":
            return {"terms": {self.field(node, value[0]): list(value)}}
        if op == "between":
            return {"range": {self.field(node, value[0]): {"gte": value[0], "lte": value[1]}}}
        name = self.field(node, value)
        if op == "eq":
            return {"term": {name: value}}
        if op == "contains":
            return {"regexp": {name: {"value": f".*{_regex_literal(value)}.*"}}}
        if op == "starts_with":
            return {"prefix": {name: {"value": value}}}
        return {"range": {name: {op: value}}}

    # -- events: at_least(n) is exact for n <= K thanks to the stored days of the latest K occurrences
    def event(self, node: EventCondition) -> dict[str, Any]:
        parts = []
        if node.count is not None:
            since = window_start(node.within_days, self.now) if node.within_days is not None else None
            parts.append(self.count(node.stream, node.count, since))
        if node.last is not None:
            last = node.last
            day = (resolve_day(Relative(last.value.seconds), self.now) if last.op == "within_last"
                   else resolve_day(last.value, self.now))
            bound = {"before": "lt", "after": "gt", "within_last": "gte"}[last.op]
            parts.append({"range": {f"ev.{node.stream}.d1": {bound: day.isoformat()}}})
        return parts[0] if len(parts) == 1 else {"bool": {"filter": parts}}

    def count(self, stream: str, count: Count, since: date | None) -> dict[str, Any]:
        def at_least(n: int) -> dict[str, Any]:
            if n <= 0:
                return MATCH_ALL
            if since is None:
                return {"range": {f"evn.{stream}": {"gte": n}}}
            return {"range": {f"ev.{stream}.d{n}": {"gte": since.isoformat()}}}

        if count.op == "between":
            lo, hi = count.value  # type: ignore[misc]
            return {"bool": {"filter": [at_least(lo)], "must_not": [at_least(hi + 1)]}}
        v: int = count.value  # type: ignore[assignment]
        exactly = {"bool": {"filter": [at_least(v)], "must_not": [at_least(v + 1)]}}
        return {"gte": at_least(v), "gt": at_least(v + 1), "lt": _not(at_least(v)), "lte": _not(at_least(v + 1)),
                "eq": exactly, "neq": _not(exactly)}[count.op]


def compile_query(node: Node, now: datetime) -> dict[str, Any]:
    return QueryCompiler(now).node(node)


def _leaves(value: Any, path: tuple[str, ...]) -> Iterable[tuple[tuple[str, ...], Any]]:
    """Scalar leaves with arrays unwrapped one level, as SQL/JSON lax mode reads them. A path with an
    empty key is skipped: rules cannot name one (and Elasticsearch refuses empty field names)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield from _leaves(item, path)
            elif not isinstance(item, list):
                yield from _leaves(item, path)
    elif value is not None and path and all(path):
        yield path, value


def trait_fields(traits: dict[str, Any]) -> dict[str, Any]:
    typed: dict[str, dict[str, list[Any]]] = {"ts": defaultdict(list), "tn": defaultdict(list), "tb": defaultdict(list)}
    present: set[str] = set()
    for path, value in _leaves(traits, ()):
        kind = "tb" if isinstance(value, bool) else "tn" if isinstance(value, int | float) else "ts"
        if kind == "ts" and not isinstance(value, str):
            continue
        typed[kind][trait_key(path)].append(value)
        present.add(trait_key(path))
    return {kind: {k: v[0] if len(v) == 1 else v for k, v in values.items()} for kind, values in typed.items()} | {
        "tp": sorted(present)}


class ElasticsearchSegmentIndex:
    """SegmentIndex over Elasticsearch. `index_contacts` (bulk) keeps documents current; event streams
    that a rule needs and the index lacks are computed for every contact before the first query."""

    def __init__(self, url: str, *, index: str = DEFAULT_INDEX, fallback_while_filling: bool | None = None) -> None:
        """`fallback_while_filling` (default: on for the deployment's index, which the worker backfills; off
        for explicitly named indexes that their caller fills, as tests and benchmarks do): while the index is
        not completely filled, answer from Postgres rather than count only the contacts indexed so far."""
        self.client = AsyncElasticsearch(url, node_class="httpxasync", request_timeout=120)
        self.index = index
        self.streams: dict[str, EventCondition] = {}
        self._ready = False
        self.fallback = PostgresSegmentIndex() if (
            index == DEFAULT_INDEX if fallback_while_filling is None else fallback_while_filling) else None
        self._filled: tuple[float, bool] = (0.0, False)  # (checked at, complete)

    @property
    def name(self) -> str:  # type: ignore[override]
        """The backend that answers now: `postgres` while this index is being filled (see `fallback`)."""
        return "postgres" if self.fallback is not None and not self._filled[1] else "elasticsearch"

    async def close(self) -> None:
        await self.client.close()

    async def ensure_index(self) -> None:
        if self._ready:
            return
        if not await self.client.indices.exists(index=self.index):
            # Created as `pending`: whoever creates it (the changes consumer indexing a touched contact, a
            # backfill) leaves a marker that the other contacts are not in yet.
            await self.client.options(ignore_status=400).indices.create(
                index=self.index, mappings=MAPPINGS | {"_meta": {META: {"state": "pending", "after": 0}}},
                settings={"number_of_shards": 1, "refresh_interval": "1s"})
        self._ready = True

    async def drop(self) -> None:
        await self.client.options(ignore_status=404).indices.delete(index=self.index)
        self._ready = False
        self._filled = (0.0, False)
        self.streams.clear()

    # -- filling
    async def backfill_status(self) -> Backfill:
        """The fill state from the index's `_meta`; an index without the marker was never filled."""
        found = await self.client.options(ignore_status=404).indices.get(index=self.index)
        body = found.body.get(self.index) if isinstance(found.body, dict) else None
        if not body:
            self._ready = False  # dropped behind this process's back: create it again when needed
            return Backfill("missing")
        meta = (body.get("mappings") or {}).get("_meta") or {}
        marker = meta.get(META) or {}
        generation = str(((body.get("settings") or {}).get("index") or {}).get("uuid", ""))
        state = "complete" if marker.get("state") == "complete" else "pending"
        return Backfill(state, int(marker.get("after") or 0), generation)

    async def mark(self, state: str, after: int) -> None:
        await self.client.indices.put_mapping(index=self.index, meta={META: {"state": state, "after": after}})

    async def backfill_step(self, session: AsyncSession, after: int, limit: int, *, batch_size: int = BATCH,
                            progress: Callable[[int, int], None] | None = None) -> tuple[int, int, bool]:
        """Index up to `limit` contacts with id > `after`, in id order and batches of `batch_size`, calling
        `progress(indexed, cursor)` after each batch; saved rules' event streams are included. Returns
        (contacts indexed, the new cursor, whether no contact is left after it)."""
        await self.ensure_index()
        await self.register_saved(session)
        done = 0
        while done < limit:
            batch = list((await session.scalars(text(
                "SELECT id FROM contacts WHERE id > :after ORDER BY id LIMIT :n"),
                {"after": after, "n": min(batch_size, limit - done)})).all())
            if not batch:
                return done, after, True
            await self._index_batch(session, batch)
            done, after = done + len(batch), batch[-1]
            if progress is not None:
                progress(done, after)
        return done, after, False

    async def finish_backfill(self) -> None:
        """Make what was indexed visible, then say so: from now on the index answers counts."""
        await self.client.indices.refresh(index=self.index)
        await self.mark("complete", 0)
        self._filled = (time.monotonic(), True)

    async def filled(self) -> bool:
        """Whether the index is completely filled, looked up at most every STATUS_TTL seconds."""
        checked, complete = self._filled
        if time.monotonic() - checked > STATUS_TTL:
            complete = (await self.backfill_status()).complete
            if not complete:
                self.streams.clear()  # a re-created index lacks streams only seen by this process's queries
            self._filled = (time.monotonic(), complete)
        return complete

    # -- queries
    async def count(self, session: AsyncSession, rule: Node, now: datetime) -> int:
        if self.fallback is not None and not await self.filled():
            return await self.fallback.count(session, rule, now)
        await self._prepare(session, rule)
        response = await self.client.count(index=self.index, query=compile_query(rule, now))
        return int(response["count"])

    async def page(self, session: AsyncSession, rule: Node, now: datetime, *, after: int, limit: int) -> list[int]:
        if self.fallback is not None and not await self.filled():
            return await self.fallback.page(session, rule, now, after=after, limit=limit)
        await self._prepare(session, rule)
        response = await self.client.search(
            index=self.index, query=compile_query(rule, now), sort=[{"id": "asc"}], size=limit, source=False,
            search_after=[after] if after else None, track_total_hits=False)
        return [int(hit["_id"]) for hit in response["hits"]["hits"]]

    async def _prepare(self, session: AsyncSession, rule: Node) -> None:
        await self.ensure_index()
        missing = [e for e in event_conditions(rule) if e.stream not in self.streams]
        if missing:
            await self.index_streams(session, missing)

    # -- indexing
    async def register_saved(self, session: AsyncSession) -> None:
        """Register the event streams of every saved rule segment."""
        rules = (await session.scalars(select(Segment.rule).where(Segment.kind == "rule"))).all()
        self.register(parse_rule(rule) for rule in rules)

    def register(self, rules: Iterable[Node]) -> None:
        for rule in rules:
            for condition in event_conditions(rule):
                self.streams.setdefault(condition.stream, condition)

    async def index_contacts(self, session: AsyncSession, contact_ids: Sequence[int] | None = None, *,
                             rules: Iterable[Node] = (), refresh: bool = True,
                             progress: Any = None) -> int:
        """Bulk (re)index whole documents: the given contacts, or all of them in id order."""
        await self.ensure_index()
        self.register(rules)
        done, after = 0, 0
        failures: list[Any] = []
        while True:
            if contact_ids is not None:
                batch = sorted(contact_ids)[done:done + BATCH]
            else:
                batch = list((await session.scalars(text(
                    "SELECT id FROM contacts WHERE id > :after ORDER BY id LIMIT :n"),
                    {"after": after, "n": BATCH})).all())
            if not batch:
                break
            failures += await self._bulk(session, batch)
            done += len(batch)
            after = batch[-1]
            if progress is not None:
                progress(len(batch))
            if contact_ids is not None and done >= len(contact_ids):
                break
        if refresh:
            await self.client.indices.refresh(index=self.index)
        _check(failures)
        return done

    async def _bulk(self, session: AsyncSession, batch: list[int]) -> list[Any]:
        """Upsert the documents of `batch` (deleting those whose contact is gone); the failed items."""
        docs = await self._documents(session, batch)
        gone = set(batch) - {d["id"] for d in docs}
        # A partial update keeps streams this process has not registered (another process may have).
        actions = [{"_op_type": "update", "_index": self.index, "_id": str(d["id"]), "doc": d, "doc_as_upsert": True}
                   for d in docs]
        actions += [{"_op_type": "delete", "_index": self.index, "_id": str(cid)} for cid in gone]
        _, errors = await async_bulk(self.client, actions, chunk_size=1000, raise_on_error=False)
        return list(errors)  # type: ignore[arg-type]

    async def _index_batch(self, session: AsyncSession, batch: list[int]) -> None:
        _check(await self._bulk(session, batch))

    async def forget(self, contact_ids: Sequence[int]) -> None:
        """Delete erased contacts' documents now (re-indexing would only notice them when touched)."""
        await self.ensure_index()
        actions = [{"_op_type": "delete", "_index": self.index, "_id": str(cid)} for cid in contact_ids]
        _, errors = await async_bulk(self.client, actions, raise_on_error=False)
        await self.client.indices.refresh(index=self.index)
        _check(errors)  # a contact that was never indexed is already forgotten

    async def index_streams(self, session: AsyncSession, conditions: Sequence[EventCondition]) -> None:
        """Add event streams to every document (partial updates), for rules the index has not seen."""
        fresh = {c.stream: c for c in conditions if c.stream not in self.streams}
        self.streams |= fresh
        after = 0
        failures: list[Any] = []
        while fresh:
            batch = list((await session.scalars(text(
                "SELECT id FROM contacts WHERE id > :after ORDER BY id LIMIT :n"), {"after": after, "n": BATCH})).all())
            if not batch:
                break
            ev, evn = await self._streams(session, batch, list(fresh.values()))
            actions = [{"_op_type": "update", "_index": self.index, "_id": str(cid),
                        "doc": {"ev": ev.get(cid, {}), "evn": evn.get(cid, {})}} for cid in batch if cid in ev]
            if actions:
                _, errors = await async_bulk(self.client, actions, chunk_size=1000, raise_on_error=False)
                failures += errors
            after = batch[-1]
        await self.client.indices.refresh(index=self.index)
        _check(failures, missing_ok=("update",))

    async def _documents(self, session: AsyncSession, ids: list[int]) -> list[dict[str, Any]]:
        rows = (await session.execute(text("""
            SELECT c.id, c.user_id, c.email, c.phone, c.timezone, c.traits, c.created_at, c.updated_at, c.last_seen_at,
                   (SELECT jsonb_object_agg(kind, values) FROM (SELECT kind, jsonb_agg(value) AS values
                        FROM identities WHERE contact_id = c.id GROUP BY kind) i) AS identities,
                   (SELECT to_jsonb(s) - 'contact_id' - 'computed_at' FROM contact_scores s
                        WHERE s.contact_id = c.id) AS scores,
                   ARRAY(SELECT segment_id FROM segment_members m
                        WHERE m.contact_id = c.id AND m.exited_at IS NULL) AS segments
            FROM contacts c WHERE c.id = ANY(:ids)
        """), {"ids": ids})).all()
        ev, evn = await self._streams(session, ids, list(self.streams.values()))
        docs = []
        for r in rows:
            doc: dict[str, Any] = {
                "id": r.id, "user_id": r.user_id, "email": r.email, "phone": r.phone, "timezone": r.timezone,
                "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at),
                "last_seen_at": _iso(r.last_seen_at) if r.last_seen_at else None,
                "idn": r.identities or {}, "sc": {k: v for k, v in (r.scores or {}).items() if v is not None},
                "segments": list(r.segments), "ev": ev.get(r.id, {}), "evn": evn.get(r.id, {}),
            }
            docs.append(doc | trait_fields(r.traits or {}))
        return docs

    async def _streams(self, session: AsyncSession, ids: list[int], conditions: list[EventCondition],
                       ) -> tuple[dict[int, dict[str, Any]], dict[int, dict[str, int]]]:
        """Per contact and stream: the days of the latest K occurrences and the total count."""
        ev: dict[int, dict[str, Any]] = defaultdict(dict)
        evn: dict[int, dict[str, int]] = defaultdict(dict)
        for condition in conditions:
            if condition.where is None:  # the rollup already holds total and latest days
                rows = await session.execute(text(
                    "SELECT contact_id, total, d1, d2, d3, more FROM contact_event_recent"
                    " WHERE contact_id = ANY(:ids) AND event = :event"), {"ids": ids, "event": condition.event})
                for contact_id, total, d1, d2, d3, more in rows:
                    evn[contact_id][condition.stream] = int(total)
                    days = [d for d in (d1, d2, d3, *more) if d is not None][:K]
                    ev[contact_id][condition.stream] = {f"d{i + 1}": d.isoformat() for i, d in enumerate(days)}
                continue
            compiler = _Compiler(datetime.now(UTC), scope="ids")
            source, day, total = compiler.source(condition, None)
            rows = await session.execute(text(
                f"SELECT contact_id, {day} AS day, {total} AS n FROM {source} GROUP BY 1, 2 ORDER BY 1, 2 DESC"),
                compiler.params | {"ids": ids})
            days: dict[int, list[str]] = defaultdict(list)
            for contact_id, d, n in rows:
                evn[contact_id][condition.stream] = evn[contact_id].get(condition.stream, 0) + int(n)
                kept = days[contact_id]
                kept.extend([d.isoformat()] * min(int(n), K - len(kept)))
            for contact_id, kept in days.items():
                ev[contact_id][condition.stream] = {f"d{i + 1}": d for i, d in enumerate(kept)}
        return ev, evn


async def reindex(database_url: str, elasticsearch_url: str, *, index: str = DEFAULT_INDEX, drop: bool = False,
                  chunk: int = 50_000, progress: Callable[[int, int], None] | None = None) -> int:
    """Index every contact (`nudge segments reindex`): optionally drop the index first, save the cursor
    after each chunk of an unfilled index (as the backfill workflow does) and mark it filled at the end. Reports
    `progress(indexed, total)`; returns the number of contacts indexed. Each chunk reads in its own
    short transaction, so a long reindex holds no snapshot open."""
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    es = ElasticsearchSegmentIndex(elasticsearch_url, index=index, fallback_while_filling=False)
    try:
        if drop:
            await es.drop()
        await es.ensure_index()
        filled = (await es.backfill_status()).complete  # refreshing a filled index: it keeps answering
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            total = int(await session.scalar(text("SELECT count(*) FROM contacts")) or 0)
        done, after, exhausted = 0, 0, False
        while not exhausted:
            async with sessions() as session:
                base = done
                n, after, exhausted = await es.backfill_step(
                    session, after, chunk, progress=None if progress is None else
                    lambda k, _cursor, base=base: progress(base + k, max(total, base + k)))
            done += n
            if not exhausted and not filled:
                await es.mark("pending", after)
        await es.finish_backfill()
        return done
    finally:
        await es.close()
        await engine.dispose()
