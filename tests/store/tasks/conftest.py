"""Helpers for task tests: a points program, tasks created and activated through the API, events sent through the
real ingest API, and the progress engine driven to the end of the outbox."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.tasks.progress import Compiled, process_batch

COMPILED = Compiled()
# The outbox's last position, ordered by the xid8 column (a bare `xid` would sort the text output: "999" > "1000").
END = "SELECT xid::text, id FROM event_outbox ORDER BY event_outbox.xid DESC, id DESC LIMIT 1"


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def program(api: httpx.AsyncClient) -> int:
    r = await api.post("/v1/ledger/programs", json={"name": f"tasks-{tag()}"})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def active_task(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    r = await api.post("/v1/tasks", json={"name": f"task-{tag()}", **fields})
    assert r.status_code == 201, r.text
    task = r.json()
    assert (await api.post(f"/v1/tasks/{task['id']}/approve")).status_code == 200
    r = await api.post(f"/v1/tasks/{task['id']}/activate")
    assert r.status_code in (200, 409), r.text  # the lifecycle workflow may have activated it first
    return (await api.get(f"/v1/tasks/{task['id']}")).json()


async def track(ingest: httpx.AsyncClient, user: str, events: list[tuple[str, dict[str, Any], datetime]],
                ids: list[str] | None = None) -> None:
    batch = [{"type": "track", "userId": user, "event": name, "properties": props, "timestamp": at.isoformat(),
              "messageId": ids[i] if ids else f"{user}-{tag()}"} for i, (name, props, at) in enumerate(events)]
    for i in range(0, len(batch), 200):
        r = await ingest.post("/v1/batch", json={"batch": batch[i:i + 200]})
        assert r.status_code == 200, r.text


async def contact_id(api: httpx.AsyncClient, user: str) -> int:
    r = await api.get("/v1/contacts", params={"identity": f"user_id:{user}"})
    return int(r.json()["items"][0]["id"])


async def drain(sessions: async_sessionmaker[AsyncSession], *, until: Any = None, timeout: float = 15.0) -> None:
    """Run the progress engine to the end of the outbox (a running consumer workflow may get there first; both
    serialise on the cursor), until `until()` holds when given."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with sessions() as s:  # everything committed before the call is consumed before it returns
        end = (await s.execute(text(END))).first()
    while True:
        async with transaction(sessions) as s:
            batch = await process_batch(s, COMPILED, now=datetime.now(UTC))
        if not batch.events:
            async with sessions() as s:
                at = (await s.execute(text("SELECT xid::text, outbox_id FROM event_cursors WHERE consumer = 'tasks'"))
                      ).first()
            passed = end is None or (at is not None and (int(at[0]), at[1]) >= (int(end[0]), end[1]))
            if passed and (until is None or await until()):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError("the progress engine did not get there in time")
            await asyncio.sleep(0.1)


async def grants_of(sessions: async_sessionmaker[AsyncSession], task_id: int) -> list[Any]:
    async with sessions() as s:
        return list(await s.execute(text("SELECT * FROM task_grants WHERE task_id = :t ORDER BY id"), {"t": task_id}))


async def progress_of(sessions: async_sessionmaker[AsyncSession], task_id: int) -> dict[str, Any]:
    async with sessions() as s:
        rows = await s.execute(text("SELECT * FROM task_progress WHERE task_id = :t"), {"t": task_id})
        return {r.period_key: r for r in rows}
