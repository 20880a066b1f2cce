"""The server-side layered layout of an automation graph: layers follow the edges, boxes never
overlap, loops are drawn as back edges, the same graph always draws the same."""

from __future__ import annotations

import random

from conveyor.domain.automations.layout import (
    BOX_H,
    BOX_W,
    ENTRY,
    Edge,
    edges_of,
    layout,
)
from tests.unit.domain.automations.conftest import automation


def chain(n: int) -> tuple[list[str], list[Edge]]:
    names = [f"n{i}" for i in range(n)]
    return names, [Edge(a, b) for a, b in zip(names, names[1:], strict=False)]


def overlapping(placed) -> list[tuple[str, str]]:
    boxes = list(placed.values())
    return [
        (a.id, b.id)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if abs(a.x - b.x) < BOX_W and abs(a.y - b.y) < BOX_H
    ]


def test_a_chain_is_one_column_one_layer_per_node():
    names, edges = chain(5)
    drawn = layout(names, edges)
    assert [drawn.nodes[n].layer for n in names] == [0, 1, 2, 3, 4]
    assert len({drawn.nodes[n].x for n in names}) == 1
    assert all(not r.back for r in drawn.routes)
    assert drawn.height > 4 * BOX_H


def test_branches_sit_side_by_side_and_meet_below():
    edges = [Edge("if", "yes", "yes"), Edge("if", "no", "no"), Edge("yes", "end"), Edge("no", "end")]
    drawn = layout(["if", "yes", "no", "end"], edges)
    assert drawn.nodes["yes"].layer == drawn.nodes["no"].layer == 1
    assert drawn.nodes["end"].layer == 2
    assert drawn.nodes["yes"].x < drawn.nodes["no"].x  # the file's order breaks the tie
    assert not overlapping(drawn.nodes)
    assert {r.label for r in drawn.routes} == {"yes", "no", ""}


def test_the_longest_path_decides_the_layer():
    edges = [Edge("a", "b"), Edge("b", "c"), Edge("a", "c")]
    drawn = layout(["a", "b", "c"], edges)
    assert drawn.nodes["c"].layer == 2


def test_a_loop_back_is_a_back_edge_and_does_not_push_layers():
    names, edges = chain(4)
    drawn = layout(names, [*edges, Edge("n3", "n1", "again")])
    assert [drawn.nodes[n].layer for n in names] == [0, 1, 2, 3]
    back = [r for r in drawn.routes if r.back]
    assert [(r.source, r.target, r.label) for r in back] == [("n3", "n1", "again")]
    assert drawn.width > layout(names, edges).width  # room on the right for the loop


def test_two_hundred_random_nodes_never_overlap_and_edges_point_down():
    rng = random.Random(7)
    names = [f"n{i}" for i in range(200)]
    edges = [Edge(names[i], names[i + 1]) for i in range(199)]
    edges += [
        Edge(names[i], names[rng.randrange(i + 1, min(200, i + 12))])
        for i in range(0, 190, 3)
    ]
    drawn = layout(names, edges)
    assert len(drawn.nodes) == 200
    assert not overlapping(drawn.nodes)
    for edge in edges:
        assert drawn.nodes[edge.target].layer > drawn.nodes[edge.source].layer
    assert layout(names, edges) == drawn  # the same graph draws the same


def test_the_edges_of_an_automation_are_labelled_by_branch():
    parsed = automation(
        """
        key: cart
        triggers: [{event: cart_updated}]
        nodes:
          - id: wait-for-order
            type: wait_until
            condition: {event: order_completed, within: since_entry}
            timeout: 1 hour
            on_timeout: check
            next: done
          - id: check
            type: if
            condition: {tag: vip}
            then: vip-mail
            else: done
          - id: vip-mail
            type: add_tag
            tag: mailed
          - id: done
            type: add_tag
            tag: finished
        """
    )
    found = {(e.source, e.target, e.label) for e in edges_of(parsed)}
    assert found == {
        (ENTRY, "wait-for-order", ""),
        ("wait-for-order", "done", "met"),
        ("wait-for-order", "check", "timed out"),
        ("check", "vip-mail", "yes"),
        ("check", "done", "no"),
        ("vip-mail", "done", ""),
    }
