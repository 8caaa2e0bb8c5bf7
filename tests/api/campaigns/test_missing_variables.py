"""A template variable some recipients lack blocks the launch with a 422 naming it, the channel and field and how
many of the probed recipients lack it; with `| default(...)` (or a guard) the launch goes through. The preview
refuses the same way for its contact. The probe itself is domain/templates.missing_variables."""

from __future__ import annotations

import httpx
import pytest

from domain.templates import missing_variables


@pytest.mark.parametrize(("source", "context", "missing"), [
    ("Hi {{ contact.first_name }}", {"contact": {}}, ["contact.first_name"]),
    ("Hi {{ contact.first_name }}", {"contact": {"first_name": "Ada"}}, []),
    ("Hi {{ contact.first_name | default('there') }}", {"contact": {}}, []),
    ("{% if contact.nick %}{{ contact.nick }}{% endif %}{% if contact.x is defined %}{{ contact.x }}{% endif %}",
     {"contact": {}}, []),
    ("{{ contact['plan'] ~ '!' }} {{ coupon }}", {"contact": {}}, ["contact.plan", "coupon"]),
    ("{% for o in contact.orders %}{{ o }}{% endfor %}", {"contact": {}}, ["contact.orders"]),
])
def test_the_probe_finds_what_a_template_uses_undefined(source: str, context: dict, missing: list[str]) -> None:
    assert missing_variables(source, context) == missing


async def _contact(api: httpx.AsyncClient, tag: str, traits: dict) -> int:
    r = await api.post("/v1/contacts", json={"user_id": tag, "email": f"{tag}@example.com", "traits": traits})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


async def test_launch_is_refused_naming_the_missing_variable(api: httpx.AsyncClient, worker: None) -> None:
    ids = [await _contact(api, "mv-ada", {"first_name": "Ada"}), await _contact(api, "mv-bob", {}),
           await _contact(api, "mv-cy", {})]
    r = await api.post("/v1/campaigns", json={
        "name": "missing", "subject": "Hi {{ contact.first_name }}", "body": "b", "audience": {"contact_ids": ids},
        "chain": ["email", "sms"], "content": {"sms": {"text": "{{ contact.first_name | default('Hi') }}"}}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    detail = r.json()["detail"]
    assert "email.subject" in detail and "contact.first_name" in detail and "2 of the first 3 recipients" in detail
    body = (await api.get(f"/v1/campaigns/{cid}")).json()
    assert body["status"] == "draft" and body["run"] is None  # refused: nothing changed

    r = await api.post(f"/v1/campaigns/{cid}/preview", json={"contact_id": ids[1], "channel": "email"})
    assert r.status_code == 422 and "contact.first_name" in r.json()["detail"], r.text
    r = await api.post(f"/v1/campaigns/{cid}/preview", json={"contact_id": ids[0], "channel": "email"})
    assert r.status_code == 200 and r.json()["content"]["subject"] == "Hi Ada", r.text


async def test_a_variant_with_a_missing_variable_is_named(api: httpx.AsyncClient) -> None:
    ids = [await _contact(api, "mv-dee", {})]
    r = await api.post("/v1/campaigns", json={
        "name": "variant missing", "subject": "Hi", "body": "b", "audience": {"contact_ids": ids},
        "variants": [{"name": "a"}, {"name": "b", "body": "Your plan: {{ contact.plan }}"}]})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 422 and "variants[b].email.text" in r.json()["detail"], r.text
    assert "1 of the first 1 recipients" in r.json()["detail"]


async def test_with_a_default_the_launch_goes_through(api: httpx.AsyncClient, worker: None) -> None:
    ids = [await _contact(api, "mv-eve", {"first_name": "Eve"}), await _contact(api, "mv-fay", {})]
    r = await api.post("/v1/campaigns", json={
        "name": "defaulted", "subject": "Hi {{ contact.first_name | default('there') }}", "body": "b",
        "audience": {"contact_ids": ids}})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 202, r.text
