"""What the journeys dashboard shows: each journey's graph of its latest version (or draft) drawn in layers with
per-node counts (entered, waiting now, each branch, exited, converted), and its version history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from domain.journeys.graph import InvalidJourney, layers, parse, successors
from store.journeys.definitions import Journey, get_journey, newest_journeys


@dataclass
class NodeBox:
    id: str
    type: str
    leads_to: list[str]
    counts: dict[str, int]
    waiting: int


@dataclass
class JourneyBoard:
    journey: Journey
    columns: list[list[NodeBox]]


async def journeys_dashboard(session: AsyncSession, *, limit: int = 50) -> list[JourneyBoard]:
    boards = []
    for listed in await newest_journeys(session, limit=limit):
        journey = await get_journey(session, listed.id)
        raw: dict[str, Any] = journey.versions[-1].graph if journey.versions else journey.draft
        try:
            graph = parse(raw)
        except InvalidJourney:
            boards.append(JourneyBoard(journey, []))
            continue
        types = {n.get("id"): n.get("type") for n in raw.get("nodes", []) if isinstance(n, dict)}
        boards.append(JourneyBoard(journey, [
            [NodeBox(node_id, str(types.get(node_id)), successors(graph.nodes[node_id]),
                     journey.counts.get(node_id, {}), journey.waiting.get(node_id, 0)) for node_id in column]
            for column in layers(graph)]))
    return boards
