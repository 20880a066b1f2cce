"""Automations as a user manages them: validate, apply (a new version when it changed),
activate, pause, archive, diff versions, and read per-node counts and contact timelines."""

from __future__ import annotations

import difflib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from conveyor.clock import Clock
from conveyor.domain.automations import Automation, AutomationParser
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.conditions import ConditionContext
from conveyor.services.contacts import decode_cursor, encode_cursor
from conveyor.services.crm.checks import check_nodes
from conveyor.store.store import Store, Tx

TRANSITIONS = {
    "draft": {"active", "archived"},
    "active": {"paused", "archived"},
    "paused": {"active", "archived"},
    "archived": set(),
}


@dataclass
class AutomationInfo:
    key: str
    name: str
    status: str
    version: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def hook_token(workspace: Workspace, key: str) -> str:
    mac = hmac.new(workspace.secret.encode(), f"hook:{key}".encode(), hashlib.sha256)
    return mac.hexdigest()[:40]


def parse_definition(
    tx: Tx, workspace: Workspace, raw: Any, key: str | None = None, *, saving: bool = False
) -> Automation:
    """`saving`: also check the scores it names against the scoring model (a stored version
    is parsed without: the model may have changed since, and its scores then count 0)."""
    ctx = ConditionContext(tx, workspace)
    known = {row.key for row in tx.automations.all(workspace.id)} | ({key} if key else set())
    if isinstance(raw, dict) and isinstance(raw.get("key"), str):
        known.add(raw["key"])
    scores = set(ctx.scoring.scores) if saving else None
    parser = AutomationParser(_condition_parser(ctx, known, scores), known)
    automation = parser.parse(raw)
    if saving:
        _check_scores(raw, scores or set())
    return automation


def _check_scores(raw: dict[str, Any], scores: set[str]) -> None:
    """Named scores of score_crossed triggers and adjust_score nodes exist in the model."""
    known = ", ".join(sorted(scores)) or "none yet: apply a scoring model"
    for i, trigger in enumerate(raw.get("triggers") or []):
        spec = trigger.get("score_crossed") if isinstance(trigger, dict) else None
        name = spec.get("score", "score") if isinstance(spec, dict) else "score"
        if name != "score" and name not in scores:
            raise InvalidInput(
                f"triggers.{i}.score_crossed.score", f"no score '{name}' in the model ({known})"
            )
    for i, node in enumerate(raw.get("nodes") or []):
        if isinstance(node, dict) and node.get("type") == "adjust_score":
            name = node.get("score", "score")
            if name != "score" and name not in scores:
                raise InvalidInput(f"nodes.{i}.score", f"no score '{name}' in the model ({known})")


def _condition_parser(
    ctx: ConditionContext, automations: set[str], scores: set[str] | None = None
) -> Any:
    from conveyor.domain.conditions import Parser

    return Parser(ctx.fields, set(ctx.lists), set(ctx.rows), automations, scores)


class Automations:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def validate(self, workspace: Workspace, raw: Any) -> Automation:
        with self.store.read() as tx:
            automation = parse_definition(tx, workspace, raw, saving=True)
            check_nodes(tx, workspace.id, automation)
            return automation

    def apply(self, workspace: Workspace, raw: Any) -> tuple[AutomationInfo, str]:
        """Create the automation, or add a version when the definition changed.

        Contacts already inside stay on their version; new entries take the newest one.
        Returns what happened: "created", "new version", or "unchanged".
        """

        return self.store.transact(lambda tx: self.save(tx, workspace, raw))

    def save(self, tx: Tx, workspace: Workspace, raw: Any) -> tuple[AutomationInfo, str]:
        """`apply` in the caller's transaction (a live edit moves runs in the same one)."""
        automation = parse_definition(tx, workspace, raw, saving=True)
        check_nodes(tx, workspace.id, automation)
        now = self.clock.now()
        row = tx.automations.by_key(workspace.id, automation.key)
        if row is None:
            automation_id = tx.automations.add(workspace.id, automation.key, automation.name, now)
            tx.automations.add_version(automation_id, 1, raw, now)
            tx.automations.change(automation_id, {"version": 1})
            what = "created"
        else:
            if row.status == "archived":
                raise Conflict(f"automation '{automation.key}' is archived")
            if tx.automations.definition(row.id, row.version) == raw:
                return self._info(tx, row), "unchanged"
            tx.automations.add_version(row.id, row.version + 1, raw, now)
            tx.automations.change(
                row.id, {"version": row.version + 1, "name": automation.name, "updated_at": now}
            )
            what = "new version"
        return self._info(tx, tx.automations.by_key(workspace.id, automation.key)), what

    def set_status(self, workspace: Workspace, key: str, status: str) -> AutomationInfo:
        def work(tx: Tx) -> AutomationInfo:
            row = self._row(tx, workspace, key)
            if status not in TRANSITIONS:
                raise InvalidInput("status", "one of draft, active, paused, archived")
            if status != row.status and status not in TRANSITIONS[row.status]:
                raise Conflict(f"an automation that is {row.status} cannot become {status}")
            tx.automations.change(row.id, {"status": status, "updated_at": self.clock.now()})
            return self._info(tx, self._row(tx, workspace, key))

        return self.store.transact(work)

    def get(self, workspace: Workspace, key: str) -> AutomationInfo:
        with self.store.read() as tx:
            return self._info(tx, self._row(tx, workspace, key))

    def all(self, workspace: Workspace) -> list[AutomationInfo]:
        with self.store.read() as tx:
            return [self._info(tx, row) for row in tx.automations.all(workspace.id)]

    def diff(self, workspace: Workspace, key: str, version: int | None = None) -> str:
        """A unified diff of a version (default: the newest) against the one before it."""
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            new = version or row.version
            after = tx.automations.definition(row.id, new)
            if after is None:
                raise NotFound(f"automation '{key}' has no version {new}")
            before = tx.automations.definition(row.id, new - 1) if new > 1 else None

        def text(d: Any) -> list[str]:
            return (
                yaml.safe_dump(d, sort_keys=False).splitlines(keepends=True)
                if d is not None
                else []
            )

        return "".join(
            difflib.unified_diff(text(before), text(after), f"{key} v{new - 1}", f"{key} v{new}")
        )

    def webhook_token(self, workspace: Workspace, key: str) -> str:
        """The secret in an automation's inbound webhook URL (HMAC of its key, per workspace)."""
        self.get(workspace, key)
        return hook_token(workspace, key)

    def stats(self, workspace: Workspace, key: str) -> dict[str, Any]:
        """Per node: contacts waiting there now and steps by outcome; runs by outcome."""
        with self.store.read() as tx:
            row = self._row(tx, workspace, key)
            nodes: dict[str, dict[str, Any]] = {}
            for node, n in tx.automations.node_counts(row.id):
                nodes.setdefault(node or "-", {"waiting": 0, "outcomes": {}})["waiting"] = n
            for node, outcome, n in tx.automations.step_counts(row.id):
                nodes.setdefault(node, {"waiting": 0, "outcomes": {}})["outcomes"][outcome] = n
            for test in tx.experiments.all(workspace.id, row.id):  # a split test's decision
                nodes.setdefault(test.node, {"waiting": 0, "outcomes": {}})["experiment"] = {
                    "status": test.status,
                    "winner": test.winner,
                    "decided_at": test.decided_at.isoformat() if test.decided_at else None,
                }
            runs: dict[str, int] = {}
            for status, outcome, n in tx.automations.outcome_counts(row.id):
                label = outcome or status
                runs[label] = runs.get(label, 0) + n
        return {"automation": key, "nodes": nodes, "runs": runs}

    def timeline(
        self, workspace: Workspace, contact_id: int, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Every step for a contact across automations, newest first, with its reason."""
        with self.store.read() as tx:
            if not tx.contacts.by_ids(workspace.id, [contact_id]):
                raise NotFound(f"no contact {contact_id} in this workspace")
            rows = tx.automations.timeline(
                workspace.id, contact_id, decode_cursor(cursor), limit + 1
            )
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "id": r.id,
                "automation": r.automation,
                "version": r.version,
                "run": r.run_id,
                "node": r.node,
                "outcome": r.outcome,
                "reason": r.reason,
                "at": r.at,
            }
            for r in rows
        ]
        return items, encode_cursor(rows[-1].id) if more else None

    def _row(self, tx: Tx, workspace: Workspace, key: str) -> Any:
        row = tx.automations.by_key(workspace.id, key)
        if row is None:
            raise NotFound(f"no automation '{key}' in this workspace")
        return row

    def _info(self, tx: Tx, row: Any) -> AutomationInfo:
        return AutomationInfo(
            row.key,
            row.name,
            row.status,
            row.version,
            tx.automations.definition(row.id, row.version) or {},
            row.created_at,
            row.updated_at,
        )
