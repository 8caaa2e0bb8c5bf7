"""Worker start-up restarts live journeys: `ensure_housekeeping` with database access starts `journey:{id}` for
every published, not archived journey whose workflow is gone, leaves a running one alone (same run), and starts
nothing for drafts or archived journeys."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from api.runtime import Runtime
from nudge.worker import ensure_housekeeping
from store.db import transaction
from workflows.journeys.runtime import JOURNEY_ID, TASK_QUEUE
from workflows.schedules import NUDGE_KIND


def graph() -> dict[str, object]:
    return {"nodes": [{"id": "start", "type": "trigger", "event": f"restart_{uuid.uuid4().hex[:8]}", "next": "done"},
                      {"id": "done", "type": "exit"}]}


async def _create(api: httpx.AsyncClient, publish: bool) -> int:
    r = await api.post("/v1/journeys", json={"name": "restart", "graph": graph()})
    assert r.status_code == 201, r.text
    jid = int(r.json()["id"])
    if publish:
        assert (await api.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    return jid


async def _status(client: Client, jid: int) -> WorkflowExecutionStatus | None:
    try:
        return (await client.get_workflow_handle(f"journey:{jid}").describe()).status
    except RPCError:
        return None


async def test_start_up_restarts_live_journeys_and_leaves_running_ones_alone(
        api: httpx.AsyncClient, worker: None, temporal_client: Client, runtime: Runtime) -> None:
    # Journeys other tests left live ran on the time-skipping server (tests/workflows/journeys) and must not start
    # on the deployment's worker here: they are archived first (their tests are over; a module's tests run together).
    async with transaction(runtime.sessions) as s:
        await s.execute(text("UPDATE journeys SET status = 'archived' WHERE status IN ('live', 'paused')"))
    gone, running, paused, archived, draft = [await _create(api, publish) for publish in (True, True, True, True,
                                                                                           False)]
    assert (await api.post(f"/v1/journeys/{paused}/pause")).status_code == 200
    assert (await api.post(f"/v1/journeys/{archived}/archive")).status_code == 200
    await temporal_client.get_workflow_handle(f"journey:{gone}").terminate("lost")
    await temporal_client.get_workflow_handle(f"journey:{paused}").terminate("lost")
    first_run = (await temporal_client.get_workflow_handle(f"journey:{running}").describe()).run_id
    handle = temporal_client.get_workflow_handle(f"journey:{archived}")
    await asyncio.wait_for(handle.result(), 30)

    await ensure_housekeeping(temporal_client, [TASK_QUEUE], runtime)
    await ensure_housekeeping(temporal_client, [TASK_QUEUE], runtime)  # idempotent

    for jid in (gone, paused):
        described = await temporal_client.get_workflow_handle(f"journey:{jid}").describe()
        assert described.status == WorkflowExecutionStatus.RUNNING
        assert described.typed_search_attributes.get(JOURNEY_ID) == str(jid)
        assert described.typed_search_attributes.get(NUDGE_KIND) == "journey"
    described = await temporal_client.get_workflow_handle(f"journey:{running}").describe()
    assert described.status == WorkflowExecutionStatus.RUNNING and described.run_id == first_run
    assert await _status(temporal_client, archived) == WorkflowExecutionStatus.COMPLETED
    assert await _status(temporal_client, draft) is None
    for jid in (gone, running, paused):
        assert (await api.post(f"/v1/journeys/{jid}/archive")).status_code == 200
