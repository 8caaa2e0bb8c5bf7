"""The send-rate cap through the real API: bounded (a 422 naming the field), stored, shown, and carried into the
run's workflow (its progress query shows it; the batch size is capped at one second's worth)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.client import Client

from workflows.campaigns import CampaignRunInput, CampaignWorkflow


async def _contacts(api: httpx.AsyncClient, n: int, tag: str) -> list[int]:
    ids = []
    for i in range(n):
        r = await api.post("/v1/contacts", json={"user_id": f"{tag}-{i}", "email": f"{tag}-{i}@example.com"})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


@pytest.mark.parametrize("cap", [0, -1, 100_001, "fast"])
async def test_a_cap_out_of_bounds_is_422_naming_the_field(api: httpx.AsyncClient, cap: object) -> None:
    before = len((await api.get("/v1/campaigns", params={"limit": 500})).json())
    r = await api.post("/v1/campaigns", json={"name": "capped", "subject": "s", "body": "b", "max_per_second": cap,
                                              "audience": {"contact_ids": [1]}})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert any(e["field"].endswith("max_per_second") for e in r.json()["errors"]), r.json()
    assert len((await api.get("/v1/campaigns", params={"limit": 500})).json()) == before


async def test_a_capped_campaign_runs_with_its_cap(api: httpx.AsyncClient, worker: None,
                                                   temporal_client: Client) -> None:
    ids = await _contacts(api, 3, "rate-api")
    r = await api.post("/v1/campaigns", json={"name": "capped run", "subject": "s", "body": "b",
                                              "max_per_second": 2000, "audience": {"contact_ids": ids}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert r.json()["max_per_second"] == 2000
    assert (await api.post(f"/v1/campaigns/{cid}/launch")).status_code == 202
    body: dict = {}
    for _ in range(600):
        body = (await api.get(f"/v1/campaigns/{cid}")).json()
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.1)
    assert body["status"] == "completed" and body["run"]["sent"] == 3 and body["max_per_second"] == 2000
    handle = temporal_client.get_workflow_handle(body["run"]["workflow_id"])
    progress = await handle.query(CampaignWorkflow.progress)
    assert progress.max_per_second == 2000
    started = [e async for e in handle.fetch_history_events()][0].workflow_execution_started_event_attributes
    params = (await temporal_client.data_converter.decode(started.input.payloads, [CampaignRunInput]))[0]
    assert params.max_per_second == 2000 and params.batch_size <= 2000
