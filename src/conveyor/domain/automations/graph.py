"""The shape of an automation's graph: targets exist, all reachable, no loop without a wait."""

from __future__ import annotations

from typing import TYPE_CHECKING

from conveyor.domain.automations.nodes import WAITING_TYPES
from conveyor.domain.errors import InvalidInput

if TYPE_CHECKING:
    from conveyor.domain.automations.model import Automation


def check_graph(automation: Automation, where: dict[str, str]) -> None:
    """Targets exist, every node is reachable, and every loop passes through a wait."""
    nodes = automation.nodes
    for node in nodes.values():
        for target in node.targets():
            if target not in nodes:
                raise InvalidInput(
                    f"{where[node.id]}", f"node '{node.id}' leads to unknown node '{target}'"
                )
    seen: set[str] = set()
    stack = [automation.start]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack += nodes[current].targets()
    for node_id in nodes:
        if node_id not in seen and nodes[node_id].type != "goal":
            raise InvalidInput(
                where[node_id], f"node '{node_id}' cannot be reached from '{automation.start}'"
            )
    # A cycle among non-waiting nodes would spin forever within one tick.
    colour: dict[str, int] = {}

    def visit(node_id: str) -> None:
        colour[node_id] = 1
        for target in nodes[node_id].targets():
            if nodes[target].type in WAITING_TYPES:
                continue
            if colour.get(target) == 1:
                raise InvalidInput(where[target], f"the loop through '{target}' has no wait in it")
            if target not in colour:
                visit(target)
        colour[node_id] = 2

    for node_id, node in nodes.items():
        if node.type not in WAITING_TYPES and node_id not in colour:
            visit(node_id)
