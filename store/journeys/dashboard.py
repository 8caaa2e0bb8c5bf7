"""What the journeys dashboard shows: each journey's graph of its latest version (or its draft), laid out in layers
(`domain.journeys.layout`) and drawn as SVG with every node's counts (entered, waiting now, each branch, exited,
converted) and every edge labelled with its branch, and the journey's version history."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.journeys.graph import InvalidJourney, parse
from domain.journeys.layout import Box, Drawing, layout, place
from store.journeys.definitions import Journey, get_journey, newest_journeys

# Outcomes in the order a box lists them; any other outcome follows, alphabetically.
ORDER = ("entered", "waiting now", "woke", "event", "timeout", "yes", "no", "holdout", "exited", "converted",
         "grant_refused", "render_failed")
TITLE_HEIGHT = 40.0  # the node's id and type
LINE_HEIGHT = 15.0   # one count


@dataclass
class NodeBox:
    id: str
    type: str
    lines: list[tuple[str, int]]  # (outcome, contacts), `entered` first, `waiting now` while anyone waits
    box: Box


@dataclass
class JourneyBoard:
    journey: Journey
    nodes: list[NodeBox] = field(default_factory=list)
    drawing: Drawing | None = None  # None: the stored graph no longer validates (drawn as nothing)


def lines(counts: dict[str, int], waiting: int) -> list[tuple[str, int]]:
    shown = dict(counts) | ({"waiting now": waiting} if waiting else {})
    shown.setdefault("entered", 0)
    rank = {name: n for n, name in enumerate(ORDER)}
    return sorted(shown.items(), key=lambda kv: (rank.get(kv[0], len(ORDER)), kv[0]))


def board(journey: Journey) -> JourneyBoard:
    raw: dict[str, Any] = journey.versions[-1].graph if journey.versions else journey.draft
    try:
        graph = parse(raw)
    except InvalidJourney:
        return JourneyBoard(journey)
    types = {n.get("id"): str(n.get("type")) for n in raw.get("nodes", []) if isinstance(n, dict)}
    shown = {node_id: lines(journey.counts.get(node_id, {}), journey.waiting.get(node_id, 0))
             for node_id in graph.nodes}
    drawing = place(layout(graph), {n: TITLE_HEIGHT + LINE_HEIGHT * len(ls) + 6 for n, ls in shown.items()})
    return JourneyBoard(journey, [NodeBox(n, types.get(n, "?"), shown[n], drawing.boxes[n])
                                 for n in graph.nodes if n in drawing.boxes], drawing)


async def journeys_dashboard(session: AsyncSession, *, limit: int = 50) -> list[JourneyBoard]:
    return [board(await get_journey(session, listed.id)) for listed in await newest_journeys(session, limit=limit)]
