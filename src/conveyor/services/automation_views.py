"""What the panel shows of automations: the list with 30-day entries and conversions, one
automation's graph (laid out here) with live per-node counts, a node's recent steps, versions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.automations import Automation
from conveyor.domain.automations.layout import ENTRY, Layout, edges_of, layout
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import Automations, parse_definition
from conveyor.store.records import NodeStepRecord
from conveyor.store.store import Store, Tx

WINDOW = timedelta(days=30)
NOT_PASSED = ("waiting", "exited", "failed", "goal_reached", "moved")  # moved: an arrival


def passed(outcomes: dict[str, int]) -> int:
    """Contacts that went on from a node. A send node's run goes on once, "queued"; the steps
    delivery and the send policy log there later (sent, retrying, dead, skipped, deferred …)
    are its message's fate, not more passes."""
    if "queued" in outcomes:
        return outcomes["queued"]
    return sum(n for o, n in outcomes.items() if o not in NOT_PASSED)


@dataclass(frozen=True)
class AutomationRow:
    key: str
    name: str
    status: str
    version: int
    updated_at: datetime
    entered: int  # runs entered in the last 30 days
    active: int  # runs inside now
    converted: int  # of those entered in 30 days, runs that reached a goal

    @property
    def conversion(self) -> float | None:
        return self.converted / self.entered if self.entered else None


@dataclass(frozen=True)
class NodeCounts:
    waiting: int = 0  # runs at this node now
    passed: int = 0  # contacts that went on from here (see `passed`)
    converted: int = 0  # goals reached here
    exited: int = 0  # runs that left by the exit condition here
    outcomes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "waiting": self.waiting,
            "passed": self.passed,
            "converted": self.converted,
            "exited": self.exited,
        }


@dataclass(frozen=True)
class Graph:
    key: str
    name: str
    status: str
    version: int  # the version drawn
    newest: int
    automation: Automation
    layout: Layout
    counts: dict[str, NodeCounts]
    runs: dict[str, int]  # by outcome (active, queued, completed, goal_reached, …)


class AutomationViews:
    def __init__(self, store: Store, clock: Clock, automations: Automations) -> None:
        self.store = store
        self.clock = clock
        self.automations = automations

    def overview(self, workspace: Workspace) -> list[AutomationRow]:
        since = self.clock.now() - WINDOW
        with self.store.read() as tx:
            rows = tx.automations.all(workspace.id)
            window = tx.automation_stats.window(workspace.id, since)
        out = []
        for row in rows:
            entered, active, converted = window.get(row.id, (0, 0, 0))
            out.append(
                AutomationRow(
                    row.key,
                    row.name,
                    row.status,
                    row.version,
                    row.updated_at,
                    entered,
                    active,
                    converted,
                )
            )
        return out

    def graph(self, workspace: Workspace, key: str, version: int | None = None) -> Graph:
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            drawn = version or row.version
            raw = tx.automations.definition(row.id, drawn)
            if raw is None:
                raise NotFound(f"automation '{key}' has no version {drawn}")
            automation = parse_definition(tx, workspace, raw, key)
            counts, runs = self._counts(tx, row.id)
        order = [ENTRY, *automation.nodes]
        return Graph(
            row.key,
            row.name,
            row.status,
            drawn,
            row.version,
            automation,
            layout(order, edges_of(automation)),
            counts,
            runs,
        )

    def live(self, workspace: Workspace, key: str) -> dict[str, Any]:
        """The per-node counts the graph page polls."""
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            counts, runs = self._counts(tx, row.id)
        return {
            "status": row.status,
            "nodes": {node: c.as_dict() for node, c in counts.items()},
            "runs": runs,
            "at": self.clock.now().isoformat(),
        }

    def node_steps(
        self, workspace: Workspace, key: str, node: str, limit: int = 25
    ) -> list[NodeStepRecord]:
        if not 1 <= limit <= 200:
            raise InvalidInput("limit", "1-200")
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            return tx.automation_stats.node_steps(row.id, node, limit)

    def versions(self, workspace: Workspace, key: str) -> list[tuple[int, datetime]]:
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            return [(v.version, v.created_at) for v in tx.automations.versions(row.id)]

    def definition_yaml(self, workspace: Workspace, key: str, version: int) -> str:
        import yaml

        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            raw = tx.automations.definition(row.id, version)
        if raw is None:
            raise NotFound(f"automation '{key}' has no version {version}")
        return yaml.safe_dump(raw, sort_keys=False)

    def _counts(self, tx: Tx, automation_id: int) -> tuple[dict[str, NodeCounts], dict[str, int]]:
        waiting = {node: n for node, n in tx.automations.node_counts(automation_id) if node}
        outcomes: dict[str, dict[str, int]] = {}
        for node, outcome, n in tx.automations.step_counts(automation_id):
            outcomes.setdefault(node, {})[outcome] = n
        counts = {}
        for node in set(waiting) | set(outcomes):
            seen = outcomes.get(node, {})
            counts[node] = NodeCounts(
                waiting=waiting.get(node, 0),
                passed=passed(seen),
                converted=seen.get("goal_reached", 0),
                exited=seen.get("exited", 0),
                outcomes=dict(sorted(seen.items())),
            )
        runs: dict[str, int] = {}
        for status, outcome, n in tx.automations.outcome_counts(automation_id):
            label = outcome or status
            runs[label] = runs.get(label, 0) + n
        return counts, runs

    @staticmethod
    def _row(tx: Tx, workspace: Workspace, key: str) -> Any:
        row = tx.automations.by_key(workspace.id, key)
        if row is None:
            raise NotFound(f"no automation '{key}' in this workspace")
        return row
