"""Where a journey's graph is drawn: a layered layout computed on the server, for the dashboard's SVG.

`layout` puts each node in a layer — the longest path from the trigger over the forward edges — and orders each
layer stably (by the mean position of what leads there, then the node's place in the graph). Edges that close a loop
(found by a depth-first walk from the trigger, successors in the graph's order) are back edges: in a validated graph
every loop passes a wait, and a loop is usually entered at its wait, so a back edge usually returns into one. They are
drawn apart, beneath the graph. An edge spanning several layers passes through a slot (a `Via`) in each layer between,
so it runs between boxes, not through them. `place` turns the layout and each box's height into coordinates. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain.journeys.graph import Condition, Graph, Split, WaitForEvent, successors

BOX_WIDTH = 160.0
GAP_X = 100.0
GAP_Y = 28.0
MARGIN = 24.0
VIA_HEIGHT = 12.0
LANE = 18.0  # vertical room per back edge beneath the graph


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str  # the branch: yes/no, event/timeout, "branch:0 50%"; "" where a node has one way on
    back: bool = False


@dataclass(frozen=True)
class Via:
    """Where forward edge number `edge` crosses layer `layer` (a layer strictly between its ends)."""

    edge: int
    layer: int


Slot = str | Via


@dataclass(frozen=True)
class Layout:
    slots: tuple[tuple[Slot, ...], ...]  # per layer, top to bottom: nodes and the long edges passing through
    layer: Mapping[str, int]
    edges: tuple[Edge, ...]

    @property
    def layers(self) -> list[list[str]]:
        return [[s for s in column if isinstance(s, str)] for column in self.slots]


def edges(graph: Graph) -> list[Edge]:
    """Every edge of the graph with its branch label, in the graph's node order."""
    out = []
    for node in graph.nodes.values():
        if isinstance(node, WaitForEvent):
            out += [Edge(node.id, node.next, "event"), Edge(node.id, node.timeout_next, "timeout")]
        elif isinstance(node, Condition):
            out += [Edge(node.id, node.yes, "yes"), Edge(node.id, node.no, "no")]
        elif isinstance(node, Split):
            out += [Edge(node.id, b.next, f"branch:{i} {b.percent}%") for i, b in enumerate(node.branches)]
        else:
            out += [Edge(node.id, target, "") for target in successors(node)]
    return out


def _walk(graph: Graph, all_edges: Sequence[Edge]) -> tuple[set[int], list[str]]:
    """Depth first from the trigger: the indexes of back edges (into a node on the walk's stack) and the nodes in
    post-order."""
    out: dict[str, list[int]] = {}
    for i, e in enumerate(all_edges):
        out.setdefault(e.source, []).append(i)
    back: set[int] = set()
    post: list[str] = []
    on_stack: set[str] = set()
    seen = {graph.trigger.id}
    stack: list[tuple[str, int]] = [(graph.trigger.id, 0)]
    on_stack.add(graph.trigger.id)
    while stack:
        node, k = stack[-1]
        mine = out.get(node, [])
        if k == len(mine):
            stack.pop()
            on_stack.discard(node)
            post.append(node)
            continue
        stack[-1] = (node, k + 1)
        target = all_edges[mine[k]].target
        if target in on_stack:
            back.add(mine[k])
        elif target not in seen:
            seen.add(target)
            on_stack.add(target)
            stack.append((target, 0))
    return back, post


def layout(graph: Graph) -> Layout:
    all_edges = edges(graph)
    back, post = _walk(graph, all_edges)
    marked = [Edge(e.source, e.target, e.label, i in back) for i, e in enumerate(all_edges)]
    forward = [i for i, e in enumerate(marked) if not e.back]
    layer = {node: 0 for node in post}
    for node in reversed(post):  # a topological order of the forward edges
        for i in forward:
            e = marked[i]
            if e.source == node and e.target in layer:
                layer[e.target] = max(layer[e.target], layer[node] + 1)
    place_in_graph = {node_id: n for n, node_id in enumerate(graph.nodes)}
    depth = max(layer.values()) + 1
    columns: list[list[Slot]] = [[] for _ in range(depth)]
    preds: dict[Slot, list[Slot]] = {}
    for node in layer:
        columns[layer[node]].append(node)
    for i in forward:
        e = marked[i]
        if e.source not in layer or e.target not in layer:
            continue
        previous: Slot = e.source
        for k in range(layer[e.source] + 1, layer[e.target]):
            via = Via(i, k)
            columns[k].append(via)
            preds.setdefault(via, []).append(previous)
            previous = via
        preds.setdefault(e.target, []).append(previous)

    def tie(slot: Slot) -> tuple[int, int]:
        if isinstance(slot, Via):
            return place_in_graph.get(marked[slot.edge].target, 0), slot.edge
        return place_in_graph.get(slot, 0), -1

    position: dict[Slot, int] = {}
    ordered: list[tuple[Slot, ...]] = []
    for column in columns:
        def centre(slot: Slot) -> float:
            known = [position[p] for p in preds.get(slot, []) if p in position]
            return sum(known) / len(known) if known else 0.0
        column.sort(key=lambda s: (centre(s), tie(s)))
        position.update({s: n for n, s in enumerate(column)})
        ordered.append(tuple(column))
    return Layout(tuple(ordered), layer, tuple(marked))


# ---- coordinates ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Box:
    node: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Arrow:
    edge: Edge
    path: str        # SVG path data
    label_x: float
    label_y: float


@dataclass(frozen=True)
class Drawing:
    width: float
    height: float
    boxes: Mapping[str, Box]
    arrows: tuple[Arrow, ...]


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def place(plan: Layout, heights: Mapping[str, float]) -> Drawing:
    """Coordinates: layers as columns left to right, each column's slots stacked and centred; forward edges leave
    the right side of their source and enter the left side of their target (spread along each side in the order of
    the other ends, so they do not cross there), through their `Via`s; back edges run beneath the graph, each in its
    own lane, from the bottom of their source to the bottom of their target."""
    tall: dict[Slot, float] = {}
    for column in plan.slots:
        for s in column:
            tall[s] = VIA_HEIGHT if isinstance(s, Via) else heights.get(s, 40.0)
    column_height = [sum(tall[s] for s in c) + GAP_Y * max(0, len(c) - 1) for c in plan.slots]
    inner = max(column_height, default=0.0)
    top: dict[Slot, float] = {}
    left = [MARGIN + k * (BOX_WIDTH + GAP_X) for k in range(len(plan.slots))]
    for k, column in enumerate(plan.slots):
        y = MARGIN + (inner - column_height[k]) / 2
        for s in column:
            top[s] = y
            y += tall[s] + GAP_Y
    boxes = {s: Box(s, left[k], top[s], BOX_WIDTH, tall[s])
             for k, column in enumerate(plan.slots) for s in column if isinstance(s, str)}

    def middle(s: Slot) -> float:
        return top[s] + tall[s] / 2

    forward = [i for i, e in enumerate(plan.edges) if not e.back and e.source in boxes and e.target in boxes]
    first_hop: dict[int, Slot] = {}
    last_hop: dict[int, Slot] = {}
    for column in plan.slots:
        for s in column:
            if isinstance(s, Via):
                first_hop.setdefault(s.edge, s)
                last_hop[s.edge] = s
    outs: dict[str, list[int]] = {}
    ins: dict[str, list[int]] = {}
    for i in forward:
        outs.setdefault(plan.edges[i].source, []).append(i)
        ins.setdefault(plan.edges[i].target, []).append(i)
    port_out: dict[int, float] = {}
    port_in: dict[int, float] = {}
    for node, mine in outs.items():
        mine.sort(key=lambda i: (middle(first_hop.get(i, plan.edges[i].target)), i))
        for n, i in enumerate(mine):
            port_out[i] = top[node] + tall[node] * (n + 1) / (len(mine) + 1)
    for node, mine in ins.items():
        mine.sort(key=lambda i: (middle(last_hop.get(i, plan.edges[i].source)), i))
        for n, i in enumerate(mine):
            port_in[i] = top[node] + tall[node] * (n + 1) / (len(mine) + 1)

    arrows: list[Arrow] = []
    for i in forward:
        e = plan.edges[i]
        src, dst = boxes[e.source], boxes[e.target]
        points = [(src.x + src.width, port_out[i])]
        k0, k1 = plan.layer[e.source], plan.layer[e.target]
        for k in range(k0 + 1, k1):
            via = Via(i, k)
            points += [(left[k], middle(via)), (left[k] + BOX_WIDTH, middle(via))]
        points.append((dst.x, port_in[i]))
        path = f"M {_n(points[0][0])} {_n(points[0][1])}"
        for n in range(1, len(points)):
            (x0, y0), (x1, y1) = points[n - 1], points[n]
            if n % 2 == 0:  # across a column, along its via
                path += f" L {_n(x1)} {_n(y1)}"
            else:  # across a gap between columns
                bend = (x1 - x0) / 2
                path += f" C {_n(x0 + bend)} {_n(y0)} {_n(x1 - bend)} {_n(y1)} {_n(x1)} {_n(y1)}"
        arrows.append(Arrow(e, path, src.x + src.width + 6, port_out[i] - 4))
    bottom = MARGIN + inner
    lanes = [i for i, e in enumerate(plan.edges) if e.back and e.source in boxes and e.target in boxes]
    for n, i in enumerate(lanes):
        e = plan.edges[i]
        src, dst = boxes[e.source], boxes[e.target]
        lane = bottom + LANE * (n + 1)
        sx, tx = src.x + src.width * 2 / 3, dst.x + dst.width / 3
        path = (f"M {_n(sx)} {_n(src.y + src.height)} L {_n(sx)} {_n(lane)} L {_n(tx)} {_n(lane)} "
                f"L {_n(tx)} {_n(dst.y + dst.height)}")
        arrows.append(Arrow(e, path, (sx + tx) / 2, lane - 4))
    width = MARGIN * 2 + len(plan.slots) * BOX_WIDTH + max(0, len(plan.slots) - 1) * GAP_X
    return Drawing(width, bottom + LANE * len(lanes) + MARGIN, boxes, tuple(arrows))
