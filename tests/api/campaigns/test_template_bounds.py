"""Template bombs at save: refused with a 422 naming the bound, rendered off the event loop meanwhile."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.campaigns.models import Campaign

# Each of the bombs (12-14 s, +1.5 GB, "would never return" before), and what each stands for.
BOMBS = {
    "{{ 3**(3**15) }}": "integer power too large",
    "{% for i in range(4500) %}{% for j in range(4500) %}{{ i }}{% endfor %}{% endfor %}": "loops more than 100,000",
    "{{ 'x'*300000000 }}": "string longer than 1,000,000 characters",
    "{{ 10**(10**10) }}": "integer power too large",
}
# Bombs only a render finds, each stopped by a different bound.
RENDER_BOMBS = {
    "{% set n = 10 %}{{ n ** (n ** n) }}": "integer power too large",
    "{% for i in range(200) %}{{ 'x' * 5000 }}{% endfor %}": "renders more than 262,144 characters",
    "{{ 'x' | center(900000000) }}": "more than 256 MB of memory",
    "{{ lipsum(200000) }}": "more than 1 s of CPU time",
}


async def _contact(api: httpx.AsyncClient, tag: str) -> int:
    r = await api.post("/v1/contacts", json={"user_id": tag, "email": f"{tag}@example.com"})
    return int(r.json()["id"])


async def _campaigns(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as s:
        return await s.scalar(select(func.count()).select_from(Campaign)) or 0


def _draft(contact: int, **parts: str) -> dict:
    return {"name": "Bomb", "subject": "Hello", "body": "Body", **parts, "audience": {"contact_ids": [contact]}}


@pytest.mark.parametrize(("template", "bound"), [*BOMBS.items(), *RENDER_BOMBS.items()])
async def test_a_template_bomb_is_refused_at_save_naming_the_bound(
    api: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], template: str, bound: str,
) -> None:
    contact = await _contact(api, "bomb")
    before = await _campaigns(sessions)
    r = await api.post("/v1/campaigns", json=_draft(contact, body=template))
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    detail = r.json()["detail"]
    assert detail.startswith("body: the template ") and bound in detail, detail
    assert await _campaigns(sessions) == before


async def test_the_part_that_passed_the_bound_is_named(api: httpx.AsyncClient) -> None:
    contact = await _contact(api, "bomb-html")
    r = await api.post("/v1/campaigns", json=_draft(contact, html="<p>{{ 'x' * 10**7 }}</p>"))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("html: the template builds a string longer than")


async def test_healthz_answers_while_a_bomb_is_being_checked(api: httpx.AsyncClient,
                                                             anon_api: httpx.AsyncClient) -> None:
    contact = await _contact(api, "bomb-health")
    bomb = asyncio.create_task(api.post("/v1/campaigns", json=_draft(contact, body="{{ lipsum(200000) }}")))
    answered_during_bomb = 0
    while not bomb.done():
        health = await anon_api.get("/healthz")
        assert health.status_code == 200
        answered_during_bomb += not bomb.done()
        await asyncio.sleep(0.02)
    assert (await bomb).status_code == 422
    # The bomb takes a full CPU second in its worker; the API answered health checks all along (in ~ms each;
    # before, /healthz waited for the render).
    assert answered_during_bomb >= 3
