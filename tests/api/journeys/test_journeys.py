"""The journeys API on the real stack: validation 422s naming the node, the lifecycle (publish starts the journey's
one workflow, versions, pause, resume, archive), and a journey run by the deployment's worker on the dev server
with events through the ingest API."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from workflows.journeys.runtime import JOURNEY_ID, JourneyWorkflow
from workflows.schedules import NUDGE_KIND


def graph(event: str, **extra: Any) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "event": event, "next": "vip"},
        {"id": "vip", "type": "condition", "when": "event.properties.amount > 100", "yes": "mark", "no": "done"},
        {"id": "mark", "type": "update_contact", "traits": {"journey_vip": event}, "next": "done"},
        {"id": "done", "type": "exit"}], **extra}


@pytest.mark.parametrize(("nodes_change", "detail"), [
    ({"id": "vip", "type": "teleport"}, "node 'vip': unknown node type 'teleport'"),
    ({"id": "vip", "type": "condition", "when": "event.properties.amount >", "yes": "mark", "no": "done"},
     "node 'vip': `when`: CEL syntax error"),
    ({"id": "vip", "type": "send", "chain": ["email"], "content": {"sms": {"text": "x"}}, "next": "done"},
     "node 'vip': missing content for channel 'email'"),
    ({"id": "vip", "type": "condition", "when": "true", "yes": "done", "no": "done"}, "node 'mark': unreachable"),
])
async def test_an_invalid_graph_is_refused_naming_the_node(api: httpx.AsyncClient, nodes_change: dict[str, Any],
                                                           detail: str) -> None:
    body = graph("x")
    body["nodes"][1] = nodes_change
    r = await api.post("/v1/journeys", json={"name": "bad", "graph": body})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert detail in r.json()["detail"]


async def test_a_cycle_without_a_wait_is_refused(api: httpx.AsyncClient) -> None:
    body = graph("x")
    body["nodes"][2]["next"] = "vip"
    r = await api.post("/v1/journeys", json={"name": "loop", "graph": body})
    assert r.status_code == 422 and "cycle that passes no wait" in r.json()["detail"]


async def test_a_journey_is_published_run_by_its_workflow_paused_and_archived(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, worker: None, temporal_client: Client,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    event = f"purchase_{uuid.uuid4().hex[:10]}"
    r = await api.post("/v1/journeys", json={"name": "Big spenders", "graph": graph(event)})
    assert r.status_code == 201, r.text
    journey = r.json()
    assert (journey["status"], journey["version"]) == ("draft", 0)
    jid = journey["id"]
    assert (await api.post(f"/v1/journeys/{jid}/resume")).status_code == 409  # never published

    r = await api.post(f"/v1/journeys/{jid}/publish")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["version"]) == ("live", 1)
    handle = temporal_client.get_workflow_handle_for(JourneyWorkflow.run, f"journey:{jid}")
    described = await handle.describe()
    assert described.typed_search_attributes.get(JOURNEY_ID) == str(jid)
    assert described.typed_search_attributes.get(NUDGE_KIND) == "journey"

    big, small = f"big-{event}", f"small-{event}"
    await ingest.post("/v1/track", json={"userId": big, "event": event, "properties": {"amount": 500}})
    await ingest.post("/v1/track", json={"userId": small, "event": event, "properties": {"amount": 5}})
    for _ in range(150):
        counts = (await api.get(f"/v1/journeys/{jid}")).json()["counts"]
        if counts.get("done", {}).get("exited") == 2:
            break
        await asyncio.sleep(0.2)
    assert counts["vip"] == {"entered": 2, "yes": 1, "no": 1}
    async with sessions() as s:
        contact_id = await s.scalar(text("SELECT contact_id FROM identities WHERE kind = 'user_id' AND value = :u"),
                                    {"u": big})
    history = (await api.get(f"/v1/contacts/{contact_id}/journeys")).json()
    assert history[0]["journey_id"] == jid and history[0]["status"] == "exited"
    assert ("mark", "entered") in [(s["node"], s["outcome"]) for s in history[0]["steps"]]

    r = await api.put(f"/v1/journeys/{jid}", json={"name": "Big spenders v2", "graph": graph(event)})
    assert r.status_code == 200 and r.json()["version"] == 1  # a draft change publishes nothing
    assert (await api.post(f"/v1/journeys/{jid}/publish")).json()["version"] == 2
    assert (await api.post(f"/v1/journeys/{jid}/pause")).json()["status"] == "paused"
    assert (await api.post(f"/v1/journeys/{jid}/pause")).status_code == 409
    assert (await api.post(f"/v1/journeys/{jid}/resume")).json()["status"] == "live"
    assert (await api.post(f"/v1/journeys/{jid}/archive")).json()["status"] == "archived"
    result = await asyncio.wait_for(handle.result(), 30)
    assert result.status == "archived" and result.entered == 2
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert (await api.put(f"/v1/journeys/{jid}", json={"name": "x", "graph": graph(event)})).status_code == 409


async def test_unknown_journeys_are_404(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/journeys/999999999")).status_code == 404
    assert (await api.post("/v1/journeys/999999999/publish")).status_code == 404


async def test_archiving_through_the_api_ends_waiting_contacts_and_the_deployments_workflow(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, worker: None, temporal_client: Client) -> None:
    event = f"browse_{uuid.uuid4().hex[:10]}"
    r = await api.post("/v1/journeys", json={"name": "Browsers", "graph": {"nodes": [
        {"id": "start", "type": "trigger", "event": event, "next": "week"},
        {"id": "week", "type": "wait", "seconds": 7 * 86400, "next": "done"},
        {"id": "done", "type": "exit"}]}})
    jid = r.json()["id"]
    assert (await api.post(f"/v1/journeys/{jid}/publish")).status_code == 200
    for i in range(3):
        await ingest.post("/v1/track", json={"userId": f"{event}-{i}", "event": event})
    for _ in range(150):
        journey = (await api.get(f"/v1/journeys/{jid}")).json()
        if journey["waiting"].get("week") == 3:
            break
        await asyncio.sleep(0.2)
    assert journey["waiting"] == {"week": 3}
    archived = (await api.post(f"/v1/journeys/{jid}/archive")).json()
    assert (archived["status"], archived["waiting"], archived["counts"]["week"]) == (
        "archived", {}, {"entered": 3, "exited": 3})
    handle = temporal_client.get_workflow_handle_for(JourneyWorkflow.run, f"journey:{jid}")
    assert (await asyncio.wait_for(handle.result(), 30)).status == "archived"
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
