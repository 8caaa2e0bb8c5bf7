"""Send templates are checked when a journey is saved (create and update): a 422 problem+json naming the node and
the field, and nothing changes. A template reading the triggering event is accepted (the sample has no event)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest


def graph(message: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "event": f"cart_{uuid.uuid4().hex[:8]}", "next": "mail"},
        {"id": "mail", "type": "send", "chain": ["email"], "content": {"email": message}, "next": "done"},
        {"id": "done", "type": "exit"}]}


@pytest.mark.parametrize(("message", "detail"), [
    ({"subject": "Hi {{ contact.first_name ", "text": "x"}, "node 'mail': content.email.subject has a syntax error"),
    ({"subject": "Hi", "text": "{{ contact.__class__ }}"}, "node 'mail': content.email.text tries to access"),
    ({"subject": "Hi", "text": "x", "html": "{{ 'x' * 10000000 }}"}, "node 'mail': content.email.html"),
    ({"subject": "{% for i in range(10**9) %}{% endfor %}", "text": "x"}, "node 'mail': content.email.subject"),
])
async def test_a_bad_send_template_is_refused_naming_the_node_and_field(api: httpx.AsyncClient,
                                                                        message: dict[str, Any], detail: str) -> None:
    r = await api.post("/v1/journeys", json={"name": "bad template", "graph": graph(message)})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert detail in r.json()["detail"]


async def test_templates_over_contact_and_event_are_accepted_and_an_update_is_checked_too(
        api: httpx.AsyncClient) -> None:
    good = graph({"subject": "Hi {{ contact.first_name }}",
                  "text": "Your {{ event.properties.item }} costs {{ event.properties.total * 2 }}"})
    r = await api.post("/v1/journeys", json={"name": "templated", "graph": good})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    r = await api.put(f"/v1/journeys/{jid}", json={"name": "broken", "graph": graph({"subject": "{{ x", "text": "x"})})
    assert r.status_code == 422 and "node 'mail': content.email.subject" in r.json()["detail"]
    r = await api.get(f"/v1/journeys/{jid}")
    assert r.json()["name"] == "templated" and r.json()["draft"] == good
