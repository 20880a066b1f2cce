"""The node registry: every node type, its spec and its semantics, by name."""

from __future__ import annotations

from datetime import datetime

from conveyor.domain.automations.model import Node
from conveyor.domain.automations.nodes import actions, crm, flow, sends
from conveyor.domain.automations.nodes.base import NodeType, Result, RunView
from conveyor.domain.evaluation import Evaluator, Snapshot

REGISTRY: dict[str, NodeType] = {
    t.name: t for t in (*flow.TYPES, *actions.TYPES, *crm.TYPES, *sends.TYPES)
}
SEND_TYPES = {t.name: t.channel for t in REGISTRY.values() if t.category == "send"}
WAITING_TYPES = frozenset(t.name for t in REGISTRY.values() if t.waits)


def execute(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    """One step of one run at `node`: the node type's semantics, pure."""
    return REGISTRY[node.type].run(node, run, snap, now, ev)


__all__ = ["REGISTRY", "SEND_TYPES", "WAITING_TYPES", "NodeType", "Result", "RunView", "execute"]
