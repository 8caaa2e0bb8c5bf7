"""JourneyWorkflow on the time-skipping test server over the real database, with events through the real ingest API.

The workflow hands its clock (`workflow.now()`) to the activity, so `env.sleep(hours=1)` makes a one-hour wait
due and the activity decides at that time. Journeys are published through the store here (not the API) so the
deployment's own worker on the dev server never runs them alongside."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.channels.delivery import service_for
from activities.journeys import JourneyActivities
from api.runtime import Runtime
from store.db import transaction
from store.journeys import definitions
from tests.skipping import time_skipping
from workflows.journeys.runtime import TASK_QUEUE, JourneyInput, JourneyWorkflow

T = TypeVar("T")
MONTH = 30 * 86400.0


def tag() -> str:
    return uuid.uuid4().hex[:10]


@dataclass
class Journeys:
    env: WorkflowEnvironment
    api: httpx.AsyncClient
    ingest: httpx.AsyncClient
    sessions: async_sessionmaker[AsyncSession]

    async def create(self, graph: dict[str, Any]) -> int:
        r = await self.api.post("/v1/journeys", json={"name": f"test-{tag()}", "graph": graph})
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    async def publish(self, journey_id: int) -> None:
        async with transaction(self.sessions) as s:
            await definitions.publish(s, journey_id)

    async def start(self, journey_id: int, *, poll: float = MONTH) -> WorkflowHandle[Any, Any]:
        return await self.env.client.start_workflow(
            JourneyWorkflow.run, JourneyInput(journey_id, poll_seconds=poll, batch_size=100),
            id=f"journey:{journey_id}:test", task_queue=TASK_QUEUE)

    async def run(self, graph: dict[str, Any]) -> tuple[int, WorkflowHandle[Any, Any]]:
        journey_id = await self.create(graph)
        await self.publish(journey_id)
        return journey_id, await self.start(journey_id)

    async def track(self, user: str, event: str, **properties: Any) -> None:
        r = await self.ingest.post("/v1/track", json={"userId": user, "event": event, "properties": properties})
        assert r.status_code == 200, r.text

    async def contact(self, user: str) -> int:
        async with self.sessions() as s:
            found = await s.scalar(text("SELECT contact_id FROM identities WHERE kind = 'user_id' AND value = :u"),
                                   {"u": user})
        assert found is not None
        return int(found)

    async def states(self, journey_id: int) -> list[Any]:
        async with self.sessions() as s:
            return list(await s.execute(text("""
                SELECT s.*, i.value AS user_id FROM journey_states s
                JOIN identities i ON i.contact_id = s.contact_id AND i.kind = 'user_id'
                WHERE s.journey_id = :j ORDER BY s.contact_id, s.entry
            """), {"j": journey_id}))

    async def until(self, handle: WorkflowHandle[Any, Any], check: Callable[[], Awaitable[T]],
                    timeout: float = 20.0) -> T:
        """Poke the workflow (new events) until `check` returns something truthy."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await handle.signal(JourneyWorkflow.poke)
            result = await check()
            if result:
                return result
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not reached in {timeout} s: {result!r}")
            await asyncio.sleep(0.2)


@pytest.fixture(scope="module")
async def journeys(api: httpx.AsyncClient, ingest: httpx.AsyncClient, runtime: Runtime) -> AsyncIterator[Journeys]:
    activities = JourneyActivities(runtime.sessions, service_for(runtime.sessions, runtime.channels, runtime.settings))
    async with time_skipping() as env, Worker(env.client, task_queue=TASK_QUEUE, workflows=[JourneyWorkflow],
                                              activities=[activities.run_journey]):
        yield Journeys(env, api, ingest, runtime.sessions)
