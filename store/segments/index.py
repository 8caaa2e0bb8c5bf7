"""The SegmentIndex interface (rule counts and pages over contacts) and its Postgres implementation.

Postgres is the embedded default; `store.segments.es.ElasticsearchSegmentIndex` answers the same questions on
large audiences when ELASTICSEARCH_URL is set.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from domain.segments.rules import Node
from store.segments.sql import compile_rule


class SegmentIndex(Protocol):
    """Answers rule queries over contacts: Postgres by default, Elasticsearch when configured."""

    name: str

    async def count(self, session: AsyncSession, rule: Node, now: datetime) -> int: ...

    async def page(self, session: AsyncSession, rule: Node, now: datetime, *, after: int, limit: int) -> list[int]: ...


class PostgresSegmentIndex:
    name = "postgres"

    async def count(self, session: AsyncSession, rule: Node, now: datetime) -> int:
        compiled = compile_rule(rule, now)
        return int(await session.scalar(text(f"SELECT count(*) FROM contacts c WHERE {compiled.where}"),
                                         compiled.params) or 0)

    async def page(self, session: AsyncSession, rule: Node, now: datetime, *, after: int, limit: int) -> list[int]:
        compiled = compile_rule(rule, now)
        rows = await session.scalars(
            text(f"SELECT c.id FROM contacts c WHERE c.id > :after AND {compiled.where} ORDER BY c.id LIMIT :limit"),
            compiled.params | {"after": after, "limit": limit})
        return list(rows.all())
