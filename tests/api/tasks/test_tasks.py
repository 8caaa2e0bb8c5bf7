"""The tasks API: definitions validated with the field named, edits only while draft, lifecycle transitions
enforced, claims refused with the reason, and the task centre."""

from __future__ import annotations

import httpx

from tests.store.tasks.conftest import program, tag


async def test_a_task_is_created_edited_while_draft_and_moved_through_its_lifecycle(
        api: httpx.AsyncClient, read_key: str, api_url: str) -> None:
    points = await program(api)
    body = {"name": f"likes-{tag()}", "user_action": "like", "num": 3, "reward_count": 1, "threshold": 20,
            "program_id": points, "period": {"kind": "daily", "zone": "Asia/Shanghai"},
            "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1, "reward_count": 2}]}
    r = await api.post("/v1/tasks", json=body)
    assert r.status_code == 201, r.text
    task = r.json()
    assert task["status"] == "draft" and task["definition"]["threshold"] == 20
    assert task["definition"]["notify"] == ["inbox"]  # the in-app inbox tells the contact by default
    assert task["workflow_id"] == f"task:{task['id']}"
    r = await api.put(f"/v1/tasks/{task['id']}", json=body | {"threshold": 10, "notify": ["push", "inbox"]})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["definition"]["threshold"] == 10
    assert r.json()["definition"]["notify"] == ["push", "inbox"]
    r = await api.post(f"/v1/tasks/{task['id']}/activate")
    assert r.status_code == 409 and "allowed from draft" in r.json()["detail"]
    assert (await api.post(f"/v1/tasks/{task['id']}/approve")).json()["status"] == "approved"
    r = await api.put(f"/v1/tasks/{task['id']}", json=body)
    assert r.status_code == 409 and "only a draft task" in r.json()["detail"]
    for step, status in (("activate", "active"), ("pause", "paused"), ("activate", "active"), ("end", "ended")):
        r = await api.post(f"/v1/tasks/{task['id']}/{step}")
        assert r.status_code == 200 and r.json()["status"] == status, r.text
    assert (await api.post(f"/v1/tasks/{task['id']}/activate")).status_code == 409
    listed = (await api.get("/v1/tasks", params={"status": "ended", "limit": 500})).json()
    assert task["id"] in [t["id"] for t in listed]
    async with httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {read_key}"}) as reader:
        assert (await reader.get(f"/v1/tasks/{task['id']}")).status_code == 200
        assert (await reader.post("/v1/tasks", json=body)).status_code == 403


async def test_an_invalid_definition_is_a_422_naming_the_field_and_creates_nothing(api: httpx.AsyncClient) -> None:
    points = await program(api)
    base = {"name": f"bad-{tag()}", "user_action": "order_paid", "reward_count": 20, "program_id": points}
    before = len((await api.get("/v1/tasks", params={"limit": 500})).json())
    cases = [
        ({"filter": "event.properties.amount >="}, "filter"),
        ({"period": {"kind": "daily", "zone": "Mars/Olympus"}}, "period.zone"),
        ({"claim_mode": "manual"}, "claim_window_seconds"),
        ({"kind": "ladder"}, "ladder"),
        ({"kind": "streak", "period": {"kind": "once"}}, "period.kind"),
        ({"num": 0}, "num"),
        ({"starts_at": "2026-12-03T10:00:00"}, "starts_at"),  # no UTC offset
        ({"notify": ["pigeon"]}, "notify"),
        ({"notify": "inbox"}, "notify"),
    ]
    for change, field in cases:
        r = await api.post("/v1/tasks", json=base | change)
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert field in r.text, (field, r.text)
    r = await api.post("/v1/tasks", json=base | {"program_id": 999_999_999})
    assert r.status_code == 404
    assert len((await api.get("/v1/tasks", params={"limit": 500})).json()) == before


async def test_claims_and_the_task_centre_answer_unknown_things_clearly(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/tasks/999999999/claim", json={"contact_id": 1})).status_code == 404
    assert (await api.get("/v1/contacts/999999999/tasks")).status_code == 404
    points = await program(api)
    task = (await api.post("/v1/tasks", json={"name": f"c-{tag()}", "user_action": "x", "reward_count": 1,
                                              "program_id": points})).json()
    contact = (await api.post("/v1/contacts", json={"user_id": f"u-{tag()}"})).json()["id"]
    r = await api.post(f"/v1/tasks/{task['id']}/claim", json={"contact_id": contact})
    assert r.status_code == 409 and "no reward waiting" in r.json()["detail"]
    centre = (await api.get(f"/v1/contacts/{contact}/tasks")).json()
    assert centre["contact_id"] == contact and task["id"] not in [t["task_id"] for t in centre["tasks"]]  # a draft
