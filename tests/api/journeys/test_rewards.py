"""A grant node's reward is checked on save: a coupon template that does not exist, or points and a coupon in one
node, is a 422 naming the node, on create and on update (publish checks again); nothing is changed."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


def _graph(**grant: Any) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "event": f"e_{uuid.uuid4().hex[:8]}", "next": "gift"},
        {"id": "gift", "type": "grant", "next": "done", **grant},
        {"id": "done", "type": "exit"}]}


async def _template(api: httpx.AsyncClient) -> int:
    r = await api.post("/v1/coupon-templates", json={"name": f"journey-{uuid.uuid4().hex[:8]}", "valid_days": 7})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_an_unknown_coupon_template_is_refused_naming_the_node(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/journeys", json={"name": "gift", "graph": _graph(coupon_template_id=987654321)})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] == "node 'gift': coupon template 987654321 does not exist"

    template = await _template(api)
    r = await api.post("/v1/journeys", json={"name": "gift", "graph": _graph(coupon_template_id=template)})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    r = await api.put(f"/v1/journeys/{jid}", json={"name": "renamed", "graph": _graph(coupon_template_id=987654321)})
    assert r.status_code == 422 and "node 'gift': coupon template 987654321" in r.json()["detail"]
    kept = (await api.get(f"/v1/journeys/{jid}")).json()
    assert kept["name"] == "gift" and kept["draft"]["nodes"][1]["coupon_template_id"] == template


async def test_a_grant_of_points_and_a_coupon_at_once_is_refused(api: httpx.AsyncClient) -> None:
    template = await _template(api)
    r = await api.post("/v1/journeys", json={"name": "both", "graph": _graph(
        coupon_template_id=template, program_id=1, amount=5)})
    assert r.status_code == 422
    assert r.json()["detail"].startswith("node 'gift': a grant gives points")
    r = await api.post("/v1/journeys", json={"name": "neither", "graph": _graph()})
    assert r.status_code == 422 and r.json()["detail"].startswith("node 'gift': `program_id`")
