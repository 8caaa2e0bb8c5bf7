"""The journeys dashboard draws a journey's graph with per-node counts and lists its versions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.journeys import definitions, runtime

SignIn = Callable[[httpx.AsyncClient, str], Awaitable[httpx.Response]]


async def test_the_journeys_page_shows_the_graph_with_counts_and_versions(
        api: httpx.AsyncClient, ingest: httpx.AsyncClient, api_url: str, admin_key: str, dashboard_sign_in: SignIn,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    event = f"page_{uuid.uuid4().hex[:10]}"
    graph = {"nodes": [
        {"id": "start", "type": "trigger", "event": event, "next": "wait"},
        {"id": "wait", "type": "wait", "seconds": 3600, "next": "done"},
        {"id": "done", "type": "exit"}]}
    r = await api.post("/v1/journeys", json={"name": f"Page {event}", "graph": graph})
    jid = r.json()["id"]
    async with transaction(sessions) as s:  # published through the store: the deployment's worker stays out
        await definitions.publish(s, jid)
    for i in range(3):
        assert (await ingest.post("/v1/track", json={"userId": f"{event}-{i}", "event": event})).status_code == 200
    moved = 0
    for _ in range(100):
        async with transaction(sessions) as s:
            moved += (await runtime.consume(s, jid, 1, _now())).moved.contacts
        if moved == 3:
            break
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as browser:
        assert (await browser.get("/dashboards/journeys")).status_code in (303, 307)
        await dashboard_sign_in(browser, admin_key)
        page = await browser.get("/dashboards/journeys")
    assert page.status_code == 200
    html = re.sub(r"\s+", " ", page.text)
    card = html[html.index(f'id="journey-{jid}"'):]
    assert re.search(rf'id="node-{jid}-wait".*?entered: <span class="count">3</span>.*?'
                     r'waiting now: <span class="count">3</span>', card), card[:2000]
    assert re.search(r'<td>1</td><td>\d{4}-\d\d-\d\d \d\d:\d\d UTC</td><td class="num">3</td>', card)


def _now() -> datetime:
    return datetime.now(UTC)
