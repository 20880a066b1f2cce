"""Panel graph benchmark: how long a large automation takes to draw on the server — the
layered layout (domain) and the SVG (the Jinja template the page includes) — and how big the
SVG is. The automation has N nodes in the shapes real ones take: chains of sends and waits,
if/else branches that meet again, splits, goals, and a go-to loop back.

    .venv/bin/python benchmarks/panel_graph.py [--nodes 200] [--repeat 20]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time

from rich.console import Console
from rich.table import Table

from benchmarks.common import load_average, machine


def definition(n: int) -> dict:
    """N nodes: every 10th an if/else whose branches meet, every 25th a split, a goal near the
    end, and a wait at the very end that goes back to the 3rd node."""
    nodes: list[dict] = []
    i = 0
    while len(nodes) < n - 2:
        here = f"n{i}"
        if i % 10 == 5 and len(nodes) < n - 6:
            nodes += [
                {
                    "id": here,
                    "type": "if",
                    "condition": {"tag": "vip"},
                    "then": f"n{i}-yes",
                    "else": f"n{i}-no",
                },
                {"id": f"n{i}-yes", "type": "add_tag", "tag": "vip-path", "next": f"n{i + 1}"},
                {"id": f"n{i}-no", "type": "wait", "for": "1 day", "next": f"n{i + 1}"},
            ]
        elif i % 25 == 12 and len(nodes) < n - 6:
            nodes += [
                {
                    "id": here,
                    "type": "split",
                    "paths": [
                        {"weight": 50, "next": f"n{i}-a", "name": "A"},
                        {"weight": 50, "next": f"n{i}-b", "name": "B"},
                    ],
                },
                {"id": f"n{i}-a", "type": "add_tag", "tag": "a", "next": f"n{i + 1}"},
                {"id": f"n{i}-b", "type": "add_tag", "tag": "b", "next": f"n{i + 1}"},
            ]
        else:
            kind = ("add_tag", "wait", "subscribe")[i % 3]
            spec = {
                "add_tag": {"tag": f"t{i}"},
                "wait": {"for": "2 hours"},
                "subscribe": {"list": "newsletter"},
            }[kind]
            nodes.append({"id": here, "type": kind, **spec})
        i += 1
    nodes.append(
        {"id": "bought", "type": "goal", "condition": {"tag": "buyer"}, "otherwise": "continue"}
    )
    nodes.append({"id": "again", "type": "wait", "for": "30 days", "next": "n3"})
    return {"key": "big", "name": "Big", "triggers": [{"event": "signed_up"}], "nodes": nodes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    from conveyor.domain.automations import AutomationParser
    from conveyor.domain.automations.layout import ENTRY, edges_of, layout
    from conveyor.domain.conditions import Parser
    from conveyor.services.automation_views import Graph
    from conveyor.web.drawing import draw_graph
    from conveyor.web.pages import environment

    automation = AutomationParser(Parser({}, {"newsletter"}, set(), set()), None).parse(
        definition(args.nodes)
    )
    template = environment().get_template("automations/_graph.svg")
    times: dict[str, list[float]] = {"layout": [], "svg": []}
    svg = ""
    for _ in range(args.repeat):
        began = time.perf_counter()
        placed = layout([ENTRY, *automation.nodes], edges_of(automation))
        laid = time.perf_counter()
        graph = Graph("big", "Big", "active", 1, 1, automation, placed, {}, {})
        svg = template.render(graph=graph, svg=draw_graph(graph))
        done = time.perf_counter()
        times["layout"].append((laid - began) * 1000)
        times["svg"].append((done - laid) * 1000)

    table = Table(title=f"Drawing a {len(automation.nodes)}-node automation ({args.repeat} runs)")
    for column in ("step", "median ms", "max ms"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for step, values in times.items():
        table.add_row(step, f"{statistics.median(values):.1f}", f"{max(values):.1f}")
    total = [a + b for a, b in zip(times["layout"], times["svg"], strict=True)]
    table.add_row("both", f"{statistics.median(total):.1f}", f"{max(total):.1f}")
    console = Console()
    console.print(table)
    console.print(
        f"SVG {len(svg) / 1024:.0f} KiB ({len(gzip.compress(svg.encode())) / 1024:.0f} KiB "
        f"gzipped); {len(placed.nodes)} boxes, {len(placed.routes)} edges, "
        f"{placed.width:.0f}x{placed.height:.0f} px"
    )
    console.print(machine())
    console.print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
