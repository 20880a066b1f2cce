"""Split tests: count each path's contacts and successes, ask the pure decision, store it.

`check` runs in the worker every few minutes (and on demand: `POST /automations/{key}/experiments
/check`, `conveyor automation experiments KEY --check`). Each test is decided in its own
transaction: the counts are read, `domain.experiments.decide` says where the test stands, and the
decision is stored; a winner also moves the workspace's catalog version, so every process's kept
condition context re-reads the winners and the split hands every later contact the winner. An
`experiment.decided` event is logged. Contacts already past the split stay on their path.

What counts, per path: every step in which a contact took it (all versions of the automation),
and of those, the ones that met the metric within `window` after taking it — a click on a
message of that same run (`clicked`), the event `converted` counts done by the contact, or the
node's condition met (`condition`, evaluated at the end of the window, or now while it is open,
with "since entry" meaning since the path was taken). Guardrails: unsubscribes and complaints of
messages of that run within the window.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.automations import Automation, Node
from conveyor.domain.errors import NotFound
from conveyor.domain.evaluation import Evaluator, event_names
from conveyor.domain.experiments import ArmCounts, Decision, TestSpec, decide, parse_test
from conveyor.domain.fields import format_datetime
from conveyor.domain.workspaces import Workspace
from conveyor.services import snapshots
from conveyor.services.automations import parse_definition
from conveyor.services.conditions import ConditionContext
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import ExperimentRecord, LoggedEvent, PathStep
from conveyor.store.store import Store, Tx

GUARDRAILS = {"email.unsubscribed": "unsubscribed", "email.complained": "complained"}


def test_nodes(automation: Automation) -> list[tuple[Node, TestSpec]]:
    """The automation's split nodes that are tests, with their parsed specs."""
    return [
        (node, parse_test(node.config["test"], f"nodes.{node.id}.test"))
        for node in automation.nodes.values()
        if node.type == "split" and "test" in node.config
    ]


class Experiments:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- checking --------------------------------------------------------------------------

    def check(self, workspace: Workspace | None = None, key: str | None = None) -> int:
        """Decide every running split test (of one workspace or automation, or all): how many
        tests reached a final decision in this call."""
        with self.store.read() as tx:
            if workspace is not None:
                spaces = [workspace]
            else:
                spaces = [workspace_from_row(r) for r in tx.workspaces.all()]
            todo: list[tuple[Workspace, int, str]] = []
            for ws in spaces:
                kept = {(e.automation_id, e.node): e for e in tx.experiments.all(ws.id)}
                for row in tx.automations.all(ws.id):
                    if (key is not None and row.key != key) or row.status not in (
                        "active",
                        "paused",
                    ):
                        continue
                    automation = self._automation(tx, ws, row)
                    for node, _spec in test_nodes(automation):
                        done = kept.get((row.id, node.id))
                        if done is None or done.status not in ("decided", "inconclusive"):
                            todo.append((ws, row.id, node.id))
        decided = 0
        for ws, automation_id, node_id in todo:
            decision = self.store.transact(
                lambda tx, ws=ws, a=automation_id, n=node_id: self._check_one(tx, ws, a, n)
            )
            decided += decision is not None and decision.final
        return decided

    def _automation(self, tx: Tx, workspace: Workspace, row: Any) -> Automation:
        definition = tx.automations.definition(row.id, row.version)
        return parse_definition(tx, workspace, definition, key=row.key)

    def _check_one(
        self, tx: Tx, workspace: Workspace, automation_id: int, node_id: str
    ) -> Decision | None:
        row = tx.automations.by_ids([automation_id]).get(automation_id)
        if row is None:
            return None
        automation = self._automation(tx, workspace, row)
        found = {n.id: (n, s) for n, s in test_nodes(automation)}
        if node_id not in found:
            return None
        node, spec = found[node_id]
        kept = next(
            (e for e in tx.experiments.all(workspace.id, automation_id) if e.node == node_id), None
        )
        if kept is not None and kept.status in ("decided", "inconclusive"):
            return None  # decided meanwhile by another worker
        now = self.clock.now()
        names = [p["name"] for p in node.config["paths"]]
        taken = tx.experiments.path_steps(automation_id, node_id, names)
        if not taken:
            return None
        started = min(s.at for s in taken)
        ctx = ConditionContext(tx, workspace)
        arms = self._counts(tx, ctx, node, spec, names, taken, started, now)
        decision = decide(arms, spec.rules, started, now)
        stored = {
            **decision.as_dict(),
            "test": spec.as_dict(),
            "started_at": format_datetime(started),
        }
        tx.experiments.save(
            workspace.id,
            automation_id,
            node_id,
            {
                "status": decision.status,
                "winner": decision.winner,
                "started_at": started,
                "checked_at": now,
                "decided_at": now if decision.final else None,
                "decision": stored,
            },
        )
        if decision.final:
            writer = ContactWriter(tx, workspace, now, source="experiments")
            writer.record(
                None,
                "experiment.decided",
                {
                    "automation": row.key,
                    "node": node_id,
                    "status": decision.status,
                    "winner": decision.winner,
                    "rule": decision.rule,
                    "reason": decision.reason,
                },
            )
            writer.flush()
        return decision

    def _counts(
        self,
        tx: Tx,
        ctx: ConditionContext,
        node: Node,
        spec: TestSpec,
        names: list[str],
        taken: list[PathStep],
        started: datetime,
        now: datetime,
    ) -> list[ArmCounts]:
        window = timedelta(seconds=spec.window)
        met: dict[str, set[int]] = {what: set() for what in ("metric", *GUARDRAILS.values())}
        by_run = {s.run_id: i for i, s in enumerate(taken) if s.run_id is not None}
        by_contact: dict[int, list[int]] = defaultdict(list)
        for i, s in enumerate(taken):
            by_contact[s.contact_id].append(i)

        def mark(what: str, event: LoggedEvent, *, by_run_only: bool) -> None:
            run = event.properties.get("run") if isinstance(event.properties, dict) else None
            if isinstance(run, int) and run in by_run:
                candidates = [by_run[run]]
            elif by_run_only:
                return
            else:
                candidates = by_contact.get(event.contact_id or 0, [])
            for i in candidates:
                if taken[i].at <= event.timestamp <= taken[i].at + window:
                    met[what].add(i)

        wanted = set(GUARDRAILS)
        if spec.metric == "clicked":
            wanted.add("email.clicked")
        elif spec.metric == "converted":
            wanted.add(spec.event)
        for event in tx.experiments.events_named(ctx.workspace.id, wanted, started):
            if event.name in GUARDRAILS:
                mark(GUARDRAILS[event.name], event, by_run_only=True)
            if spec.metric == "clicked" and event.name == "email.clicked":
                mark("metric", event, by_run_only=True)
            elif spec.metric == "converted" and event.name == spec.event:
                mark("metric", event, by_run_only=False)
        if spec.metric == "condition" and node.condition is not None:
            self._condition_met(tx, ctx, node, taken, window, now, met["metric"])
        counts = {n: [0, 0, 0, 0] for n in names}
        for i, s in enumerate(taken):
            c = counts[s.path]
            c[0] += 1
            c[1] += i in met["metric"]
            c[2] += i in met["unsubscribed"]
            c[3] += i in met["complained"]
        return [ArmCounts(n, *counts[n]) for n in names]

    def _condition_met(
        self,
        tx: Tx,
        ctx: ConditionContext,
        node: Node,
        taken: list[PathStep],
        window: timedelta,
        now: datetime,
        met: set[int],
    ) -> None:
        assert node.condition is not None
        evaluator = Evaluator(ctx.conditions)
        names = event_names(node.condition, ctx.conditions)
        ids = sorted({s.contact_id for s in taken})
        for start in range(0, len(ids), 1000):
            loaded = snapshots.load(tx, ctx, ids[start : start + 1000], names)
            for i, s in enumerate(taken):
                facts = loaded.snapshots.get(s.contact_id)
                if facts is None:
                    continue
                facts.entered_at = s.at
                moment = min(now, s.at + window)
                if evaluator.evaluate(node.condition, facts, moment).ok:
                    met.add(i)

    # --- reading ---------------------------------------------------------------------------

    def of_automation(self, workspace: Workspace, key: str) -> list[dict[str, Any]]:
        """The automation's split tests: spec, and the latest decision (or not started yet)."""
        with self.store.read() as tx:
            row = tx.automations.by_key(workspace.id, key)
            if row is None:
                raise NotFound(f"no automation '{key}' in this workspace")
            automation = self._automation(tx, workspace, row)
            kept = {e.node: e for e in tx.experiments.all(workspace.id, row.id)}
        out = []
        for node, spec in test_nodes(automation):
            out.append(_shown(node, spec, kept.get(node.id)))
        for node_id, record in kept.items():  # tests of earlier versions, still on record
            if node_id not in automation.nodes or "test" not in automation.nodes[node_id].config:
                out.append({"node": node_id, **_record(record), "current": False})
        return out


def _shown(node: Node, spec: TestSpec, record: ExperimentRecord | None) -> dict[str, Any]:
    paths = [{"name": p["name"], "weight": p["weight"]} for p in node.config["paths"]]
    base = {"node": node.id, "paths": paths, "test": spec.as_dict(), "current": True}
    if record is None:
        return {**base, "status": "waiting", "winner": None, "decision": None}
    return {**base, **_record(record)}


def _record(record: ExperimentRecord) -> dict[str, Any]:
    return {
        "status": record.status,
        "winner": record.winner,
        "started_at": format_datetime(record.started_at),
        "checked_at": format_datetime(record.checked_at),
        "decided_at": format_datetime(record.decided_at) if record.decided_at else None,
        "decision": record.decision,
    }
