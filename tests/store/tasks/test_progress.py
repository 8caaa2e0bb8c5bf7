"""The progress engine over real events sent through the ingest API: the seed examples across a day boundary and
a time-zone edge, replays, cap races with concurrent ingestion, budget exhaustion, streaks."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.tasks.progress import process_batch
from tests.store.tasks.conftest import (
    COMPILED,
    active_task,
    contact_id,
    drain,
    grants_of,
    program,
    progress_of,
    tag,
    track,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


async def test_like_three_items_one_point_at_most_twenty_a_day_across_midnight_in_the_tasks_zone(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    like = f"like_{tag()}"
    task = await active_task(api, user_action=like, num=3, reward_count=1, threshold=20,
                             program_id=await program(api), period={"kind": "daily", "zone": "Asia/Shanghai"})
    user = f"u-{tag()}"
    last_second = datetime(2026, 12, 3, 23, 59, 59, tzinfo=SHANGHAI)  # 15:59:59 UTC, same UTC day as midnight
    await track(ingest, user, [(like, {}, last_second - timedelta(seconds=i)) for i in range(64)]
                + [(like, {}, last_second + timedelta(seconds=1))] * 3)
    await drain(sessions)
    grants = await grants_of(sessions, task["id"])
    by_day = {k: [g for g in grants if g.period_key == k] for k in ("2026-12-03", "2026-12-04")}
    assert len(by_day["2026-12-03"]) == 20 and len(by_day["2026-12-04"]) == 1
    assert {g.amount for g in grants} == {1} and {g.status for g in grants} == {"pending"}
    c = await contact_id(api, user)
    assert by_day["2026-12-04"][0].reference == f"reward:{task['id']}:{c}:2026-12-04:1"
    progress = await progress_of(sessions, task["id"])
    assert progress["2026-12-03"].progress == 64 and progress["2026-12-03"].status == 2  # completed for the day
    assert progress["2026-12-04"].progress == 3 and progress["2026-12-04"].status == 1


async def test_orders_of_100_or_more_and_comments_of_20_characters(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    order, comment, t = f"order_{tag()}", f"comment_{tag()}", tag()
    points = await program(api)
    orders = await active_task(api, user_action=order, filter="event.properties.amount >= 100", reward_count=20,
                               program_id=points, period={"kind": "daily", "zone": "America/New_York"})
    comments = await active_task(api, user_action=comment, filter="size(event.properties.text) >= 20",
                                 reward_count=10, program_id=points, period={"kind": "daily"})
    at = datetime(2026, 11, 1, 12, 0, tzinfo=ZoneInfo("America/New_York"))
    await track(ingest, f"u-{t}", [(order, {"amount": 99}, at), (order, {"amount": 100}, at),
                                   (order, {"amount": 250.5}, at), (order, {"amount": "lots"}, at),
                                   (comment, {"text": "too short"}, at), (comment, {"text": "x" * 20}, at)])
    await drain(sessions)
    assert [g.amount for g in await grants_of(sessions, orders["id"])] == [20, 20]
    assert [g.amount for g in await grants_of(sessions, comments["id"])] == [10]


async def test_a_batch_replayed_after_a_crash_before_the_cursor_commit_counts_once(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    check_in = f"check_in_{tag()}"
    task = await active_task(api, user_action=check_in, reward_count=5, threshold=1, program_id=await program(api),
                             period={"kind": "daily", "zone": "Asia/Shanghai"})
    user, at = f"u-{tag()}", datetime(2026, 12, 3, 9, tzinfo=SHANGHAI)
    ids = [f"{user}-a", f"{user}-b"]
    await drain(sessions)
    await track(ingest, user, [(check_in, {}, at), (check_in, {}, at)], ids=ids)

    class Crash(Exception):
        pass

    for _ in range(3):  # the worker dies after processing, before its transaction commits
        with pytest.raises(Crash):
            async with transaction(sessions) as s:
                await process_batch(s, COMPILED, now=at)
                raise Crash
    await track(ingest, user, [(check_in, {}, at), (check_in, {}, at)], ids=ids)  # the SDK retries its send too
    await drain(sessions, until=lambda: _has_grants(sessions, task["id"]))
    grants = await grants_of(sessions, task["id"])
    assert [(g.period_key, g.n, g.amount) for g in grants] == [("2026-12-03", 1, 5)]
    assert (await progress_of(sessions, task["id"]))["2026-12-03"].progress == 2


async def _has_grants(sessions: async_sessionmaker[AsyncSession], task_id: int) -> bool:
    return bool(await grants_of(sessions, task_id))


async def _grants_at_least(sessions: async_sessionmaker[AsyncSession], task_id: int, n: int) -> bool:
    return len(await grants_of(sessions, task_id)) >= n


async def test_two_consumers_racing_with_concurrent_ingestion_never_pass_the_cap(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    like = f"like_{tag()}"
    task = await active_task(api, user_action=like, num=1, reward_count=1, threshold=5, lifetime_cap=7,
                             program_id=await program(api), period={"kind": "daily"})
    user = f"u-{tag()}"
    day1, day2 = datetime(2026, 12, 1, 10, tzinfo=SHANGHAI), datetime(2026, 12, 2, 10, tzinfo=SHANGHAI)
    sends = [track(ingest, user, [(like, {}, day)] * 4) for day in (day1, day2) for _ in range(3)]
    consumers = [drain(sessions) for _ in range(3)]
    await asyncio.gather(*sends, *consumers)
    await drain(sessions)
    grants = await grants_of(sessions, task["id"])
    per_day: dict[str, int] = {}
    for g in grants:
        per_day[g.period_key] = per_day.get(g.period_key, 0) + 1
    assert len(grants) == 7 and max(per_day.values()) <= 5  # lifetime cap 7, at most 5 a day
    assert len({g.reference for g in grants}) == 7


async def test_an_exhausted_budget_pauses_the_task_and_never_overspends(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    share = f"share_{tag()}"
    task = await active_task(api, user_action=share, reward_count=20, budget=50, program_id=await program(api),
                             period={"kind": "once"})
    at = datetime(2026, 12, 3, 10, tzinfo=SHANGHAI)
    for i in range(4):
        await track(ingest, f"u-{tag()}-{i}", [(share, {}, at)])
    await drain(sessions)
    grants = await grants_of(sessions, task["id"])
    statuses = sorted(g.status for g in grants)
    assert statuses.count("pending") == 2 and set(statuses) == {"pending", "failed"}  # 20 + 20 of 50
    after = (await api.get(f"/v1/tasks/{task['id']}")).json()
    assert after["status"] == "paused" and after["reserved"] == 40 and "budget exhausted" in after["alert"]
    await track(ingest, f"u-{tag()}", [(share, {}, at)])  # a paused task counts nothing
    await drain(sessions)
    assert len(await grants_of(sessions, task["id"])) == len(grants)


async def test_a_streak_rises_daily_and_a_missed_day_resets_it(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    check_in = f"check_in_{tag()}"
    task = await active_task(api, kind="streak", user_action=check_in, reward_count=5, streak_rewards=[5, 10, 15],
                             program_id=await program(api), period={"kind": "daily", "zone": "Asia/Shanghai"})
    user = f"u-{tag()}"
    days = [datetime(2026, 12, d, 23, 59, 59, tzinfo=SHANGHAI) for d in (1, 2, 3, 5, 6)]
    for n, day in enumerate(days, 1):  # one day at a time, as they happen
        await track(ingest, user, [(check_in, {}, day), (check_in, {}, day)])
        await drain(sessions, until=lambda n=n: _grants_at_least(sessions, task["id"], n))
    assert [g.amount for g in await grants_of(sessions, task["id"])] == [5, 10, 15, 5, 10]


async def test_erasure_removes_task_progress_and_cancels_unissued_rewards(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    act = f"act_{tag()}"
    task = await active_task(api, user_action=act, reward_count=3, budget=100, program_id=await program(api))
    user = f"u-{tag()}"
    await track(ingest, user, [(act, {}, datetime(2026, 12, 3, 10, tzinfo=SHANGHAI))])
    await drain(sessions, until=lambda: _has_grants(sessions, task["id"]))
    c = await contact_id(api, user)
    assert (await api.delete(f"/v1/contacts/{c}")).status_code == 204
    assert await progress_of(sessions, task["id"]) == {}
    assert [g.status for g in await grants_of(sessions, task["id"])] == ["failed"]
    assert (await api.get(f"/v1/tasks/{task['id']}")).json()["reserved"] == 0
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM task_participants WHERE contact_id = :c"), {"c": c}) == 0


async def test_an_anonymous_visitors_progress_follows_the_merge(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    read = f"read_{tag()}"
    task = await active_task(api, user_action=read, num=2, reward_count=1, program_id=await program(api))
    anon, user, at = f"a-{tag()}", f"u-{tag()}", datetime(2026, 12, 3, 10, tzinfo=SHANGHAI)
    r = await ingest.post("/v1/track", json={"anonymousId": anon, "event": read, "timestamp": at.isoformat()})
    assert r.status_code == 200
    await drain(sessions)
    r = await ingest.post("/v1/identify", json={"anonymousId": anon, "userId": user})
    assert r.status_code == 200
    await track(ingest, user, [(read, {}, at)])
    await drain(sessions, until=lambda: _has_grants(sessions, task["id"]))
    (grant,) = await grants_of(sessions, task["id"])
    assert grant.contact_id == await contact_id(api, user)


async def test_a_composite_counts_its_steps_in_event_time_order_and_a_ladder_each_tier_once(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    cart, paid, read = f"cart_{tag()}", f"paid_{tag()}", f"read_{tag()}"
    points = await program(api)
    combo = await active_task(api, kind="composite", steps=[cart, paid], reward_count=7, threshold=1,
                              program_id=points, period={"kind": "daily"})
    ladder = await active_task(api, kind="ladder", user_action=read, ladder=[{"num": 1, "reward": 1},
                                                                              {"num": 5, "reward": 3}],
                               program_id=points, period={"kind": "daily"})
    at = datetime(2026, 12, 3, 10, tzinfo=SHANGHAI)
    user = f"u-{tag()}"
    # Sent paid-first, but the event times say cart then paid: the composite completes once.
    await track(ingest, user, [(paid, {}, at + timedelta(minutes=5)), (cart, {}, at),
                               (read, {}, at), (read, {}, at), (read, {}, at)])
    await drain(sessions)
    await track(ingest, user, [(read, {}, at)] * 10)
    await drain(sessions)
    assert [g.amount for g in await grants_of(sessions, combo["id"])] == [7]
    assert [(g.n, g.amount) for g in await grants_of(sessions, ladder["id"])] == [(1, 1), (2, 3)]
