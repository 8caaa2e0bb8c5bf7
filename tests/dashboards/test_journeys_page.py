"""The journeys page in real headless Chromium: each journey's graph drawn as server-rendered SVG — a box per node
with its counts, an arrow per edge labelled with its branch, the loop back into a wait drawn apart — with nothing
fetched from anywhere but Nudge, and the version history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from playwright.async_api import Browser
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from store.db import transaction
from store.journeys import definitions, runtime


def _graph(event: str) -> dict[str, Any]:
    return {"nodes": [
        {"id": "start", "type": "trigger", "event": event, "next": "paid"},
        {"id": "paid", "type": "wait_for_event", "event": f"{event}_paid", "timeout_seconds": 3600, "next": "done",
         "timeout_next": "vip"},
        {"id": "vip", "type": "condition", "when": "event.properties.total > 100", "yes": "ab", "no": "day"},
        {"id": "ab", "type": "split", "branches": [{"percent": 50, "next": "gift"}, {"percent": 30, "next": "day"}]},
        {"id": "gift", "type": "update_contact", "traits": {"vip": True}, "next": "done"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "again"},
        {"id": "again", "type": "condition", "when": "contact.traits.vip == true", "yes": "done", "no": "day"},
        {"id": "done", "type": "exit"}]}


EDGES = {  # (source, target, label, drawn as a back edge)
    ("start", "paid", "", False), ("paid", "done", "event", False), ("paid", "vip", "timeout", False),
    ("vip", "ab", "yes", False), ("vip", "day", "no", False), ("ab", "gift", "branch:0 50%", False),
    ("ab", "day", "branch:1 30%", False), ("gift", "done", "", False), ("day", "again", "", False),
    ("again", "done", "yes", False), ("again", "day", "no", True)}


async def test_the_journeys_page_draws_the_graph_with_labelled_edges_and_counts(
        browser: Browser, api: httpx.AsyncClient, ingest: httpx.AsyncClient, api_url: str, read_key: str,
        sessions: async_sessionmaker[AsyncSession]) -> None:
    event = f"drawn_{uuid.uuid4().hex[:10]}"
    r = await api.post("/v1/journeys", json={"name": f"Drawn {event}", "graph": _graph(event)})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    async with transaction(sessions) as s:  # published through the store: the deployment's worker stays out
        await definitions.publish(s, jid)
    for i in range(3):
        assert (await ingest.post("/v1/track", json={"userId": f"{event}-{i}", "event": event})).status_code == 200
    moved = 0
    for _ in range(100):  # until the three events are consumed (they commit through the ingest writer)
        async with transaction(sessions) as s:
            moved += (await runtime.consume(s, jid, 1, datetime.now(UTC))).moved.contacts
        if moved == 3:
            break
    assert moved == 3

    page = await browser.new_page()
    elsewhere: list[str] = []
    page.on("request", lambda req: None if req.url.startswith(api_url) else elsewhere.append(req.url))
    await page.goto(f"{api_url}/dashboards/login")
    await page.fill("input[name=key]", read_key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/dashboards/**")
    await page.goto(f"{api_url}/dashboards/journeys")
    svg = page.locator(f"#graph-{jid}")
    await svg.wait_for()

    drawn = await svg.evaluate("""svg => [...svg.querySelectorAll('g.edge')].map(g => {
        const path = g.querySelector('path'), label = g.querySelector('.edge-label');
        const start = path.getPointAtLength(0), end = path.getPointAtLength(path.getTotalLength());
        const box = id => svg.querySelector(`g.node[data-node="${id}"] rect`).getBBox();
        const from = box(g.dataset.source), to = box(g.dataset.target);
        return {source: g.dataset.source, target: g.dataset.target, label: label ? label.textContent : '',
                back: g.classList.contains('back'), arrow: path.getAttribute('marker-end'),
                starts: [start.x - (from.x + from.width), start.y - from.y, from.height],
                ends: [end.x - to.x, end.y - to.y, to.height],
                backStart: [start.x - from.x, start.y - (from.y + from.height)],
                backEnd: [end.x - to.x, end.y - (to.y + to.height)]};
    })""")
    assert {(e["source"], e["target"], e["label"], e["back"]) for e in drawn} == EDGES
    assert len(drawn) == len(EDGES)
    for e in drawn:
        assert e["arrow"].startswith("url(#arrow"), e
        if e["back"]:  # beneath the graph: from the bottom of its source to the bottom of its target
            assert abs(e["backStart"][1]) < 0.5 and abs(e["backEnd"][1]) < 0.5, e
        else:  # from the right side of its source to the left side of its target, within their heights
            assert abs(e["starts"][0]) < 0.5 and 0 < e["starts"][1] < e["starts"][2], e
            assert abs(e["ends"][0]) < 0.5 and 0 < e["ends"][1] < e["ends"][2], e

    boxes = await svg.evaluate("""svg => Object.fromEntries([...svg.querySelectorAll('g.node')].map(g => {
        const r = g.querySelector('rect').getBBox();
        return [g.dataset.node, {x: r.x, y: r.y, w: r.width, h: r.height,
            counts: Object.fromEntries([...g.querySelectorAll('.count-line')].map(
                t => [t.dataset.outcome, t.textContent]))}];
    }))""")
    assert set(boxes) == {"start", "paid", "vip", "ab", "gift", "day", "again", "done"}
    assert boxes["start"]["counts"] == {"entered": "entered: 3"}
    assert boxes["paid"]["counts"] == {"entered": "entered: 3", "waiting now": "waiting now: 3"}
    assert boxes["gift"]["counts"] == {"entered": "entered: 0"}
    for a, b in ((a, b) for a in boxes.values() for b in boxes.values() if a is not b):  # no box hides another
        assert a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"] \
            or b["y"] + b["h"] <= a["y"], (a, b)
    # Layers left to right by the longest path from the trigger.
    assert boxes["start"]["x"] < boxes["paid"]["x"] < boxes["vip"]["x"] < boxes["ab"]["x"] < boxes["day"]["x"] \
        < boxes["again"]["x"] < boxes["done"]["x"]

    card = page.locator(f"#journey-{jid}")
    assert await card.locator("table.versions tbody tr").count() == 1
    assert (await card.locator("table.versions tbody tr td").first.text_content()) == "1"
    assert elsewhere == []
    await page.close()
