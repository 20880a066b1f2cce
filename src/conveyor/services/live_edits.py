"""Editing a live automation: where its contacts are now, a review of a new version against the
live one, and publishing it with the marketer's moves in one transaction.

Contacts inside stay on their version unless a move says otherwise (the pure rules, and when a
moved run is due, are in `domain/automations/moves.py`). A publish names the live version it
was reviewed against (`base_version`): if another version went live since, it is refused
(409) rather than moving contacts by a plan made for a graph that is no longer the live one.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from conveyor.clock import Clock
from conveyor.domain.automations import Automation, Node
from conveyor.domain.automations.moves import Move, Position, due_at, positions, validate
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import AutomationInfo, Automations, parse_definition
from conveyor.services.crm.checks import check_nodes
from conveyor.store.store import Store, Tx


@dataclass(frozen=True)
class Target:
    """A node of the new version contacts may move to, and when a moved run is due there."""

    node: str
    type: str
    due: datetime | None  # None: a moment of its own per contact (a wait on a date or time)


@dataclass(frozen=True)
class Review:
    """A new version against the live one: what changed, where contacts are, where they may go."""

    key: str
    name: str
    live_version: int
    new_version: int  # the number it will get (the live one's when the definition is unchanged)
    unchanged: bool
    diff: str
    positions: list[Position]
    targets: list[Target]
    definition: dict[str, Any]


@dataclass(frozen=True)
class Published:
    info: AutomationInfo
    result: str  # created | new version | unchanged
    version: int  # the live version now (the new one, or the same when unchanged)
    moved: list[tuple[Move, int]] = field(default_factory=list)  # each move, runs it moved

    @property
    def total_moved(self) -> int:
        return sum(n for _, n in self.moved)


class LiveEdits:
    def __init__(self, store: Store, clock: Clock, automations: Automations) -> None:
        self.store = store
        self.clock = clock
        self.automations = automations

    def positions(self, workspace: Workspace, key: str) -> tuple[int, list[Position]]:
        """The live version, and per (version, node) its active runs; `change` says what the
        live version did to that node (an earlier version's node may be removed or changed)."""
        with self.store.read() as tx:
            row = _row(tx, workspace, key)
            versions, counts = self._versions(tx, workspace, row)
            return row.version, positions(versions, counts, versions[row.version])

    def review(self, workspace: Workspace, key: str, raw: Any) -> Review:
        """What publishing `raw` would do (nothing is written)."""
        with self.store.read() as tx:
            row = _row(tx, workspace, key)
            new = self._parse_new(tx, workspace, key, raw)
            live = tx.automations.definition(row.id, row.version) or {}
            unchanged = live == raw
            versions, counts = self._versions(tx, workspace, row)
        now = self.clock.now()
        return Review(
            key=key,
            name=new.name,
            live_version=row.version,
            new_version=row.version if unchanged else row.version + 1,
            unchanged=unchanged,
            diff=_diff(key, live, raw, row.version, row.version + 1),
            positions=positions(versions, counts, new),
            targets=[_target(n, now) for n in new.nodes.values()],
            definition=raw,
        )

    def publish(
        self,
        workspace: Workspace,
        key: str,
        raw: Any,
        moves: list[Move],
        base_version: int,
        by: str,
    ) -> Published:
        """Add `raw` as the new live version and carry out `moves`, in one transaction.

        Refused (Conflict, 409) when the live version is no longer `base_version`; a bad plan
        is refused whole (InvalidInput naming `moves.N.field`): no version is added, no run moved.
        """

        def work(tx: Tx) -> Published:
            row = _row(tx, workspace, key)
            if row.version != base_version:
                raise Conflict(
                    f"version {row.version} of '{key}' went live after the version you reviewed "
                    f"({base_version}); review the change again",
                    field="base_version",
                )
            new = self._parse_new(tx, workspace, key, raw)
            versions, _ = self._versions(tx, workspace, row)
            unchanged = (tx.automations.definition(row.id, row.version) or {}) == raw
            new_version = row.version if unchanged else row.version + 1
            validate(moves, versions, new, new_version)
            info, result = self.automations.save(tx, workspace, raw)
            now = self.clock.now()
            moved: list[tuple[Move, int]] = []
            for move in moves:
                label = move.label(new_version)
                reason = {
                    "why": f"moved from {label} by {by}",
                    "from_version": move.from_version,
                    "from_node": move.from_node,
                    "by": by,
                }
                done = tx.automations.move_runs(
                    row.id,
                    move.from_version,
                    move.from_node,
                    new_version,
                    move.to_node,
                    now,
                    reason,
                )
                moved.append((move, len(done)))
            return Published(info, result, new_version, moved)

        return self.store.transact(work)

    # --- helpers -------------------------------------------------------------------------------

    def _parse_new(self, tx: Tx, workspace: Workspace, key: str, raw: Any) -> Automation:
        if not isinstance(raw, dict):
            raise InvalidInput("definition", "an automation is a mapping with key and nodes")
        if raw.get("key") != key:
            raise InvalidInput(
                "definition.key", f"the definition's key must be '{key}' (this automation)"
            )
        try:
            new = parse_definition(tx, workspace, raw, key=key, saving=True)
        except InvalidInput as exc:
            raise exc.prefixed("definition") from None
        check_nodes(tx, workspace.id, new)
        return new

    def _versions(
        self, tx: Tx, workspace: Workspace, row: Any
    ) -> tuple[dict[int, Automation], dict[tuple[int, str], int]]:
        """Every stored version, parsed, and the active runs per (version, node)."""
        versions: dict[int, Automation] = {}
        for stored in tx.automations.versions(row.id):
            try:
                versions[stored.version] = parse_definition(
                    tx, workspace, stored.definition, key=row.key
                )
            except InvalidInput:
                continue  # no longer readable (its catalog changed): its runs count as removed
        counts = {(p.version, p.node): p.count for p in tx.automations.positions(row.id)}
        return versions, counts


def _row(tx: Tx, workspace: Workspace, key: str) -> Any:
    row = tx.automations.by_key(workspace.id, key)
    if row is None:
        raise NotFound(f"no automation '{key}' in this workspace")
    return row


def _target(node: Node, now: datetime) -> Target:
    return Target(node.id, node.type, due_at(node, now))


TOP_ORDER = ("key", "name", "triggers", "entry", "priority", "exit_when", "start", "nodes")
NODE_ORDER = ("id", "type")


def _ordered(
    d: dict[str, Any], first: tuple[str, ...], last: tuple[str, ...] = ()
) -> dict[str, Any]:
    keys = [k for k in first if k in d]
    keys += [k for k in d if k not in first and k not in last]
    return {k: d[k] for k in keys + [k for k in last if k in d]}


def yaml_text(definition: Any) -> str:
    """A definition as YAML in the order people write it (key, name, triggers, …, nodes; each
    node's id and type first, `next` last), whatever order the database kept its keys in, so
    two versions' diff shows what changed and nothing else."""
    if not isinstance(definition, dict):
        return yaml.safe_dump(definition, sort_keys=False) if definition else ""
    out = _ordered(definition, TOP_ORDER)
    if isinstance(out.get("nodes"), list):
        out["nodes"] = [
            _ordered(n, NODE_ORDER, ("next",)) if isinstance(n, dict) else n for n in out["nodes"]
        ]
    return yaml.safe_dump(out, sort_keys=False, allow_unicode=True)


def _diff(key: str, before: Any, after: Any, old: int, new: int) -> str:
    def text(d: Any) -> list[str]:
        return yaml_text(d).splitlines(keepends=True) if d else []

    return "".join(
        difflib.unified_diff(text(before), text(after), f"{key} v{old}", f"{key} v{new}")
    )
