"""The journey page's layered layout: a layer is the longest path from the trigger, every forward edge goes to a later
layer, the edges that close a loop are marked back (their target leads to their source) and each loop passes a wait;
each edge carries its branch label; the order in a layer is stable; boxes never overlap and arrows join the sides."""

from __future__ import annotations

from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.journeys.graph import WAITING, Graph, InvalidJourney, parse
from domain.journeys.layout import Via, edges, layout, place

KINDS = ["wait", "wait_for_event", "condition", "split", "send", "update_contact", "exit"]


@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    """Valid graphs with loops: node i always leads on to node i+1 (so all are reachable), other ways go anywhere."""
    n = draw(st.integers(1, 12))
    ids = [f"n{i}" for i in range(n)] + ["end"]
    nodes: list[dict[str, Any]] = [{"id": "t", "type": "trigger", "event": "go", "next": "n0"}]
    for i, node_id in enumerate(ids[:-1]):
        on, anywhere = ids[i + 1], st.sampled_from(ids)
        kind = draw(st.sampled_from(KINDS[:-1]))
        node: dict[str, Any] = {"id": node_id, "type": kind}
        if kind == "wait":
            node |= {"seconds": 60, "next": on}
        elif kind == "wait_for_event":
            node |= {"event": "e", "timeout_seconds": 60, "next": on, "timeout_next": draw(anywhere)}
        elif kind == "condition":
            node |= {"when": "event.properties.n > 1", "yes": on, "no": draw(anywhere)}
        elif kind == "split":
            node |= {"branches": [{"percent": 50, "next": draw(anywhere)}, {"percent": 30, "next": on}]}
        elif kind == "send":
            node |= {"chain": ["sms"], "content": {"sms": {"text": "hi"}}, "next": draw(anywhere)}
        else:
            node |= {"traits": {"seen": 1}, "next": draw(anywhere)}
        nodes.append(node)
    nodes.append({"id": "end", "type": "exit"})
    order = draw(st.permutations(nodes[1:]))  # the graph's order is the marketer's, not the walk's
    try:
        return parse({"nodes": [nodes[0], *order]})
    except InvalidJourney:
        assume(False)
        raise


def _reaches(forward: dict[str, list[str]], start: str, goal: str) -> bool:
    seen, todo = {start}, [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        for nxt in forward.get(node, []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


@settings(max_examples=200, deadline=None)
@given(graphs())
def test_layers_are_longest_paths_and_only_back_edges_go_backwards(graph: Graph) -> None:
    plan = layout(graph)
    assert sorted(n for layer in plan.layers for n in layer) == sorted(graph.nodes)
    assert plan.layers[0] == [graph.trigger.id]
    forward: dict[str, list[str]] = {}
    for e in plan.edges:
        if not e.back:
            forward.setdefault(e.source, []).append(e.target)
            assert plan.layer[e.source] < plan.layer[e.target], e
    for e in plan.edges:
        if e.back:  # it closes a loop of forward edges, and that loop waits somewhere
            assert plan.layer[e.target] <= plan.layer[e.source], e
            assert _reaches(forward, e.target, e.source), e
            on_loop = [n for n in graph.nodes if _reaches(forward, e.target, n) and _reaches(forward, n, e.source)]
            assert any(isinstance(graph.nodes[n], WAITING) for n in on_loop), e
    for node in graph.nodes:  # the longest path: one more than the latest thing leading there
        before = [plan.layer[e.source] for e in plan.edges if not e.back and e.target == node]
        assert plan.layer[node] == (max(before) + 1 if before else 0)
    assert [(e.source, e.target, e.label) for e in plan.edges] == [(e.source, e.target, e.label) for e in edges(graph)]
    assert layout(graph) == plan  # stable


@settings(max_examples=100, deadline=None)
@given(graphs(), st.integers(40, 120))
def test_boxes_never_overlap_and_arrows_join_their_sides(graph: Graph, height: int) -> None:
    plan = layout(graph)
    drawing = place(plan, {n: float(height + (i % 3) * 15) for i, n in enumerate(graph.nodes)})
    boxes = list(drawing.boxes.values())
    assert {b.node for b in boxes} == set(graph.nodes)
    for a in boxes:
        assert 0 <= a.x and a.x + a.width <= drawing.width and 0 <= a.y and a.y + a.height <= drawing.height
        for b in boxes:
            if a is not b:
                assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
    assert len(drawing.arrows) == len(plan.edges)
    for arrow in drawing.arrows:
        src, dst = drawing.boxes[arrow.edge.source], drawing.boxes[arrow.edge.target]
        numbers = [float(x) for x in arrow.path.replace("M", " ").replace("C", " ").replace("L", " ").split()]
        (x0, y0), (x1, y1) = numbers[:2], numbers[-2:]
        if arrow.edge.back:
            assert (y0, y1) == (src.y + src.height, dst.y + dst.height)
            assert max(numbers[1::2]) > max(b.y + b.height for b in boxes)  # beneath every box
        else:
            assert x0 == src.x + src.width and src.y < y0 < src.y + src.height
            assert x1 == dst.x and dst.y < y1 < dst.y + dst.height


def test_a_reminder_loop_returns_into_its_wait_and_long_edges_pass_between_boxes() -> None:
    graph = parse({"nodes": [
        {"id": "start", "type": "trigger", "event": "signup", "next": "day"},
        {"id": "day", "type": "wait", "seconds": 86400, "next": "active"},
        {"id": "active", "type": "condition", "when": "contact.traits.active == true", "yes": "done", "no": "nudge"},
        {"id": "nudge", "type": "send", "chain": ["sms"], "content": {"sms": {"text": "We miss you"}}, "next": "day"},
        {"id": "done", "type": "exit"}]})
    plan = layout(graph)
    assert plan.layers == [["start"], ["day"], ["active"], ["nudge", "done"]] or \
        plan.layers == [["start"], ["day"], ["active"], ["done", "nudge"]]
    assert [(e.source, e.target, e.label) for e in plan.edges if e.back] == [("nudge", "day", "")]
    assert {(e.source, e.target): e.label for e in plan.edges}[("active", "done")] == "yes"

    skip = parse({"nodes": [
        {"id": "start", "type": "trigger", "event": "x", "next": "c"},
        {"id": "c", "type": "condition", "when": "true", "yes": "a", "no": "z"},
        {"id": "a", "type": "update_contact", "traits": {"a": 1}, "next": "b"},
        {"id": "b", "type": "update_contact", "traits": {"b": 1}, "next": "z"},
        {"id": "z", "type": "exit"}]})
    plan = layout(skip)
    assert plan.layer == {"start": 0, "c": 1, "a": 2, "b": 3, "z": 4}
    vias = [s for column in plan.slots for s in column if isinstance(s, Via)]
    assert [(plan.edges[v.edge].source, plan.edges[v.edge].target, v.layer) for v in vias] == [
        ("c", "z", 2), ("c", "z", 3)]
