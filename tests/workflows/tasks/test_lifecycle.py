"""TaskLifecycleWorkflow on the time-skipping test server over the real database: an approved task becomes active
at its start, unclaimed rewards lapse on the workflow's timer, and the task ends at its end time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.tasks.progress import TaskActivities
from store.db import transaction
from tests.skipping import server_binary
from tests.store.tasks.conftest import program, tag
from workflows.tasks.lifecycle import TASK_QUEUE, LifecycleInput, TaskLifecycleWorkflow


async def test_a_task_starts_lapses_unclaimed_rewards_and_ends_on_its_timers(
        api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession]) -> None:
    now = datetime.now(UTC)
    r = await api.post("/v1/tasks", json={
        "name": f"launch-{tag()}", "user_action": f"visit_{tag()}", "reward_count": 3,
        "program_id": await program(api), "claim_mode": "manual", "claim_window_seconds": 3600,
        "starts_at": (now + timedelta(days=1)).isoformat(), "ends_at": (now + timedelta(days=3)).isoformat()})
    assert r.status_code == 201, r.text
    task_id = r.json()["id"]
    async with transaction(sessions) as s:  # approved without the API, so the real deployment's workflow stays out
        await s.execute(text("UPDATE tasks SET status = 'approved' WHERE id = :t"), {"t": task_id})
        contact = await s.scalar(text("INSERT INTO contacts (user_id) VALUES (:u) RETURNING id"), {"u": f"u-{tag()}"})
        await s.execute(text("""
            INSERT INTO task_grants (task_id, contact_id, period_key, n, reference, program_id, amount, status,
                                     claim_deadline)
            SELECT :t, :c, '2026-12-03', 1, :r, program_id, 3, 'claimable', :d FROM tasks WHERE id = :t
        """), {"t": task_id, "c": contact, "r": f"reward:{task_id}:{contact}:x:1", "d": now + timedelta(days=2)})

    async def status() -> tuple[str, str]:
        async with sessions() as s:
            task = await s.scalar(text("SELECT status FROM tasks WHERE id = :t"), {"t": task_id})
            grant = await s.scalar(text("SELECT status FROM task_grants WHERE task_id = :t"), {"t": task_id})
        return task, grant

    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server_binary())
    try:
        activities = TaskActivities(sessions)
        async with Worker(env.client, task_queue=TASK_QUEUE, workflows=[TaskLifecycleWorkflow],
                          activities=[activities.task_state, activities.change_status, activities.lapse_unclaimed]):
            handle = await env.client.start_workflow(
                TaskLifecycleWorkflow.run, LifecycleInput(task_id, lapse_every_seconds=6 * 3600),
                id=f"task:{task_id}:test", task_queue=TASK_QUEUE)
            await env.sleep(timedelta(hours=12))
            assert await status() == ("approved", "claimable")
            await env.sleep(timedelta(hours=13))  # past the start
            assert (await status())[0] == "active"
            await env.sleep(timedelta(hours=24))  # past the claim deadline, and a lapse sweep
            assert await status() == ("active", "lapsed")
            assert await handle.result() == "ended"  # at the end time
            assert (await status())[0] == "ended"
    finally:
        await env.shutdown()
