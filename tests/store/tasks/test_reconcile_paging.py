"""Reconciliation's grant checks page by key: each call reads a bounded page after its checkpoint, wraps around
at the end, and over a few calls finds every grant without its posting and every `reward:` credit without its
grant (the tasks' GrantSource, store/tasks/grants.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.ledger.postings import Kind, Request
from store.db import transaction
from store.ledger.postings import apply
from store.ledger.receipts import Submission
from store.tasks.grants import TaskGrants
from tests.store.tasks.conftest import contact_id, program, tag, track


async def _issued_grants(sessions: async_sessionmaker[AsyncSession], program_id: int, n: int) -> list[str]:
    keys = [tag() for _ in range(n)]  # period keys of their own: every grant is a completion of its own
    refs = [f"reward:{900_000 + i}:{i + 1}:{k}:1" for i, k in enumerate(keys)]
    async with transaction(sessions) as s:
        await s.execute(text("""
            INSERT INTO task_grants (task_id, contact_id, period_key, n, reference, program_id, amount, status)
            SELECT 899999 + i, i, k, 1, r, :p, 5, 'issued'
            FROM unnest(CAST(:r AS text[]), CAST(:k AS text[])) WITH ORDINALITY AS x(r, k, i)
        """), {"r": refs, "k": keys, "p": program_id})
    return refs


async def test_grant_checks_read_a_bounded_page_per_call_and_cover_everything_over_calls(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    missing = await _issued_grants(sessions, points, 5)  # issued, never posted
    user = f"u-{tag()}"
    await track(ingest, user, [("visit", {}, datetime.now(UTC))])
    c = await contact_id(api, user)
    stray = [f"reward:{tag()}:{c}:once:1" for _ in range(3)]  # credited, no grant
    async with transaction(sessions) as s:
        done = await apply(s, [Submission(points, Request(r, Kind.CREDIT, contact_id=c, amount=2)) for r in stray],
                           now=datetime.now(UTC))
    assert not [d for d in done if isinstance(d, Exception)]
    source = TaskGrants()
    seen_grants: list[list[str]] = []
    seen_postings: list[list[str]] = []
    for _ in range(3):
        async with transaction(sessions) as s:
            seen_grants.append([m.reference for m in await source.missing_credits(s, [points], 2)])
            seen_postings.append([r for _, _, r in await source.unexplained_postings(s, [points], 2)])
    assert all(len(page) <= 2 for page in seen_grants + seen_postings)
    assert seen_grants[:2] == [missing[:2], missing[2:4]]
    assert seen_grants[2] == [missing[4], missing[0]]  # the end of the table, then round to the start
    assert {r for page in seen_grants for r in page} == set(missing)
    assert {r for page in seen_postings for r in page} == set(stray)


async def test_a_table_smaller_than_a_page_is_checked_whole_on_every_call(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    points = await program(api)
    missing = await _issued_grants(sessions, points, 3)
    source = TaskGrants()
    for _ in range(2):
        async with transaction(sessions) as s:
            assert [m.reference for m in await source.missing_credits(s, [points], 100)] == missing
    async with transaction(sessions) as s:  # another program filter keeps its own checkpoint: it starts over
        assert [m.reference for m in await source.missing_credits(s, [points, 10**9], 2)] == missing[:2]
