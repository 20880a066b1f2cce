"""A layered drawing of an automation's graph, computed on the server (pure; no I/O).

Nodes go in layers top to bottom by their longest distance from the start (edges that loop back,
such as a go-to, are drawn but do not count), are ordered in each layer by the barycenter of
their neighbours (a few sweeps down and up cut most crossings), and are placed on a grid of
fixed-size boxes. The panel draws the result as SVG: boxes, and edges as cubic curves.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

from conveyor.domain.automations.model import Automation

BOX_W, BOX_H = 196, 60
GAP_X, GAP_Y = 36, 56
MARGIN = 24
SWEEPS = 4
ENTRY = "__entry__"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass(frozen=True)
class Placed:
    id: str
    layer: int
    x: float  # top-left corner
    y: float


@dataclass(frozen=True)
class Route:
    source: str
    target: str
    label: str
    path: str  # SVG path data
    label_x: float
    label_y: float
    back: bool  # loops back up the graph


@dataclass(frozen=True)
class Layout:
    nodes: dict[str, Placed]
    routes: list[Route]
    width: float
    height: float


def edges_of(automation: Automation) -> list[Edge]:
    """The graph's edges, labelled with the branch they are: an entry box leads to the start."""
    out = [Edge(ENTRY, automation.start)]
    for node in automation.nodes.values():
        branches = {"then": "yes", "else": "no", "on_timeout": "timed out"}
        if node.next and node.next in automation.nodes:
            out.append(Edge(node.id, node.next, "met" if node.config.get("on_timeout") else ""))
        for key, label in branches.items():
            target = node.config.get(key)
            if isinstance(target, str) and target in automation.nodes:
                out.append(Edge(node.id, target, label))
        for path in node.config.get("paths", []):
            if path["next"] in automation.nodes:
                out.append(Edge(node.id, path["next"], f"{path['name']} ({path['weight']})"))
    return out


def layout(order: list[str], edges: list[Edge]) -> Layout:
    """Place `order`'s nodes (the file's order breaks ties) and route `edges` between them."""
    index = {node: i for i, node in enumerate(order)}
    forward, back = _split_back_edges(order, edges)
    layers = _layers(order, forward)
    rows = _order_rows(order, layers, forward, index)
    widest = max((len(r) for r in rows), default=1)
    width = widest * BOX_W + (widest - 1) * GAP_X + 2 * MARGIN
    placed: dict[str, Placed] = {}
    for layer, row in enumerate(rows):
        row_width = len(row) * BOX_W + (len(row) - 1) * GAP_X
        left = (width - row_width) / 2
        for i, node in enumerate(row):
            placed[node] = Placed(
                node, layer, left + i * (BOX_W + GAP_X), MARGIN + layer * (BOX_H + GAP_Y)
            )
    height = 2 * MARGIN + len(rows) * BOX_H + max(0, len(rows) - 1) * GAP_Y
    routes = [_route(placed[e.source], placed[e.target], e.label, False) for e in forward]
    routes += [_route(placed[e.source], placed[e.target], e.label, True) for e in back]
    if back:
        width += GAP_X * 2  # room for the loops drawn on the right
    return Layout(placed, routes, width, height)


def _split_back_edges(order: list[str], edges: list[Edge]) -> tuple[list[Edge], list[Edge]]:
    """Edges that close a cycle (found by a depth-first walk from each node in order)."""
    succ: dict[str, list[Edge]] = defaultdict(list)
    for e in edges:
        if e.source in order and e.target in order:
            succ[e.source].append(e)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    back: set[int] = set()
    for root in order:
        if root in state:
            continue
        stack = [(root, iter(succ[root]))]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            edge = next(it, None)
            if edge is None:
                state[node] = 2
                stack.pop()
            elif state.get(edge.target) == 1:
                back.add(id(edge))
            elif edge.target not in state:
                state[edge.target] = 1
                stack.append((edge.target, iter(succ[edge.target])))
    kept = [e for e in edges if e.source in order and e.target in order]
    return [e for e in kept if id(e) not in back], [e for e in kept if id(e) in back]


def _layers(order: list[str], forward: list[Edge]) -> dict[str, int]:
    """Longest path from the sources (Kahn's order over the acyclic edges)."""
    preds: dict[str, int] = {n: 0 for n in order}
    succ: dict[str, list[str]] = defaultdict(list)
    for e in forward:
        preds[e.target] += 1
        succ[e.source].append(e.target)
    layer = {n: 0 for n in order}
    ready = deque(n for n in order if preds[n] == 0)
    while ready:
        node = ready.popleft()
        for target in succ[node]:
            layer[target] = max(layer[target], layer[node] + 1)
            preds[target] -= 1
            if preds[target] == 0:
                ready.append(target)
    return layer


def _order_rows(
    order: list[str], layers: dict[str, int], forward: list[Edge], index: dict[str, int]
) -> list[list[str]]:
    depth = max(layers.values(), default=-1) + 1
    rows: list[list[str]] = [[] for _ in range(depth)]
    for node in order:
        rows[layers[node]].append(node)
    up: dict[str, list[str]] = defaultdict(list)
    down: dict[str, list[str]] = defaultdict(list)
    for e in forward:
        up[e.target].append(e.source)
        down[e.source].append(e.target)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        span = range(1, depth) if downward else range(depth - 2, -1, -1)
        for r in span:
            near = rows[r - 1] if downward else rows[r + 1]
            where = {n: i for i, n in enumerate(near)}
            neighbours = up if downward else down
            rows[r] = _by_barycenter(rows[r], neighbours, where, index)
    return rows


def _by_barycenter(
    row: list[str], neighbours: dict[str, list[str]], where: dict[str, int], index: dict[str, int]
) -> list[str]:
    current = {n: i for i, n in enumerate(row)}

    def key(node: str) -> tuple[float, int]:
        seen = [where[m] for m in neighbours[node] if m in where]
        centre = sum(seen) / len(seen) if seen else float(current[node])
        return (centre, index[node])

    return sorted(row, key=key)


def _route(a: Placed, b: Placed, label: str, back: bool) -> Route:
    if back:  # out of the right side, round, and into the target's right side
        x1, y1 = a.x + BOX_W, a.y + BOX_H / 2
        x2, y2 = b.x + BOX_W, b.y + BOX_H / 2
        bend = max(x1, x2) + GAP_X * 1.5
        path = f"M{x1:.1f},{y1:.1f} C{bend:.1f},{y1:.1f} {bend:.1f},{y2:.1f} {x2:.1f},{y2:.1f}"
        return Route(a.id, b.id, label, path, bend - 4, (y1 + y2) / 2, True)
    x1, y1 = a.x + BOX_W / 2, a.y + BOX_H
    x2, y2 = b.x + BOX_W / 2, b.y
    mid = (y1 + y2) / 2
    path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{mid:.1f} {x2:.1f},{mid:.1f} {x2:.1f},{y2:.1f}"
    return Route(a.id, b.id, label, path, (x1 + x2) / 2, mid, False)
