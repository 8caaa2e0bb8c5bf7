"""Starting journeys' workflows: on publish (the API) and at worker start-up (`nudge.worker.ensure_housekeeping`),
which restarts every live or paused journey's `journey:{id}` — one terminated by hand, or lost with a Temporal
namespace, runs again; one that runs is left alone (same id, `USE_EXISTING`)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.settings import Settings
from store.journeys import definitions
from workflows.journeys.runtime import (
    TASK_QUEUE,
    JourneyInput,
    JourneyWorkflow,
    journey_attribute,
    summary,
    workflow_id,
)
from workflows.schedules import kind


async def start_journey(client: Client, journey_id: int, name: str, settings: Settings) -> None:
    """Start `journey:{id}` unless it runs (idempotent). A paused journey's workflow starts too: it reads the
    status and waits for `resume`."""
    try:
        await client.start_workflow(
            JourneyWorkflow.run, JourneyInput(journey_id, poll_seconds=settings.journey_poll_seconds,
                                              window_seconds=settings.journey_window_seconds, wall_clock=True),
            id=workflow_id(journey_id), task_queue=TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=kind("journey", journey_attribute(journey_id)),
            static_summary=summary(journey_id, name))
    except WorkflowAlreadyStartedError:
        pass  # another process started it first


async def ensure_live_journeys(client: Client, sessions: async_sessionmaker[AsyncSession],
                               settings: Settings) -> list[int]:
    """Make sure every published, not archived journey has its workflow running; the ids it looked at."""
    async with sessions() as session:
        journeys = await definitions.active_journeys(session)
    for journey in journeys:
        await start_journey(client, journey.id, journey.name, settings)
    return [j.id for j in journeys]
