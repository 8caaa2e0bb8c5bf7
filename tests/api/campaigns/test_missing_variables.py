"""A template variable some recipients lack blocks the launch with a 422 naming it, the channel and field, how many of
the whole audience lack it (counted in SQL) and a few of them; with `| default(...)` (or a guard) the launch goes
through. The preview refuses the same way for its contact (domain/templates.missing_variables renders it); the
launch reads the templates' needs statically (domain/campaigns_variables.py, its own tests in tests/domain)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from domain.templates import missing_variables
from store.db import transaction


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
    assert "email.subject" in detail and "contact.first_name" in detail and "2 of the 3 recipients" in detail
    assert f"contacts {ids[1]}, {ids[2]})" in detail
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
    assert "1 of the 1 recipients" in r.json()["detail"]


async def test_with_a_default_the_launch_goes_through(api: httpx.AsyncClient, worker: None) -> None:
    ids = [await _contact(api, "mv-eve", {"first_name": "Eve"}), await _contact(api, "mv-fay", {})]
    r = await api.post("/v1/campaigns", json={
        "name": "defaulted", "subject": "Hi {{ contact.first_name | default('there') }}", "body": "b",
        "audience": {"contact_ids": ids}})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 202, r.text


async def _lifecycle(api: httpx.AsyncClient, cid: int) -> tuple[dict, list]:
    return (await api.get(f"/v1/campaigns/{cid}")).json(), (await api.get(f"/v1/campaigns/{cid}/transitions")).json()


async def test_a_variable_missing_for_one_recipient_of_5001_blocks_the_launch(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], worker: None,
) -> None:
    """The whole audience is counted, not a sample: only the 5,000th of 5,001 segment members lacks the trait."""
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text("""
            INSERT INTO contacts (user_id, email, traits)
            SELECT 'mv-many-' || i, 'mv-many-' || i || '@example.com',
                   CASE WHEN i = 5000 THEN '{"plan": "pro"}'::jsonb
                        ELSE jsonb_build_object('first_name', 'N' || i, 'plan', 'pro') END
            FROM generate_series(1, 5001) i ORDER BY i RETURNING id"""))).all())
    lacking = ids[4999]
    r = await api.post("/v1/segments", json={"name": "mv 5001", "kind": "manual", "contact_ids": ids})
    assert r.status_code == 201, r.text
    segment = r.json()["id"]
    r = await api.post("/v1/campaigns", json={
        "name": "mv many", "subject": "Hi {{ contact.first_name }}", "body": "Your plan: {{ contact.plan }}",
        "audience": {"segment_ids": [segment]}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    before = await _lifecycle(api, cid)

    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    detail = r.json()["detail"]
    assert detail.startswith("email.subject uses contact.first_name, which 1 of the 5,001 recipients do not have "
                             f"(contact {lacking})."), detail
    assert "contact.plan" not in detail  # everyone has it
    assert await _lifecycle(api, cid) == before  # refused: status, runs and audit unchanged
    async with sessions() as s:
        assert await s.scalar(text("SELECT count(*) FROM campaign_runs WHERE campaign_id = :c"), {"c": cid}) == 0
        assert await s.scalar(text("SELECT count(*) FROM deliveries WHERE campaign_id = :c"), {"c": cid}) == 0

    # The same audience with a default for the name launches.
    r = await api.post("/v1/campaigns", json={
        "name": "mv many defaulted", "subject": "Hi {{ contact.first_name | default('there') }}",
        "body": "Your plan: {{ contact.plan }}", "audience": {"segment_ids": [segment]}})
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    assert r.status_code == 202, r.text


async def test_nested_traits_and_unknown_variables_are_counted(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with transaction(sessions) as s:
        ids = list((await s.scalars(text("""
            INSERT INTO contacts (user_id, traits) VALUES
                ('mv-nest-1', '{"address": {"city": "Oslo"}}'), ('mv-nest-2', '{"address": {"zip": "0150"}}'),
                ('mv-nest-3', '{"address": {"city": null}}'), ('mv-nest-4', '{"address": "Main St"}')
            RETURNING id"""))).all())
    r = await api.post("/v1/campaigns", json={
        "name": "mv nested", "subject": "s", "audience": {"contact_ids": ids},
        "body": "{% if contact.address %}{{ contact.address.city }}{% endif %}"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = await api.post(f"/v1/campaigns/{cid}/launch")
    # a JSON null is a value (a render prints it); an absent key, or no object on the way, is missing
    assert r.status_code == 422 and "contact.address.city, which 2 of the 4 recipients" in r.json()["detail"], r.text
    assert f"(contacts {ids[1]}, {ids[3]})" in r.json()["detail"]

    r = await api.post("/v1/campaigns", json={
        "name": "mv unknown", "subject": "{{ coupon }}", "body": "{{ campaign.name }} {{ contact.email }}",
        "audience": {"contact_ids": ids}})
    r = await api.post(f"/v1/campaigns/{r.json()['id']}/launch")
    assert r.status_code == 422 and "email.subject uses coupon, which 4 of the 4" in r.json()["detail"], r.text
