"""Editing a live automation: where its contacts are, which of those nodes a new version removes
or changes, and the marketer's plan for moving them (validated here, carried out by the store).

Runs pin a version: by default a contact inside stays on the version it entered and finishes it.
A move takes every active run at one node of an old version to a node of the new version.

**Arrival at the target.** A moved run arrives as if it had just reached the target node: no
state, due at once (`wake_at = now`), so the engine executes the target at its next pass. For a
`wait` node that means the wait starts over at the publish: due at publish + its duration
(`due_at`). Why: the time spent waiting in the old version belonged to the old version's plan;
counted from the move, the new version's spacing between messages holds, so a moved contact is
never mailed sooner than the new version allows (a marketer who shortens a wait moves contacts
to it knowing when they will be due). A `wait_until` on a condition checks it at once and its
timeout counts from the publish; one on a date or a time of day keeps its own moment; any other
node (a send, a tag) is carried out at the next engine pass. One rule for every run also keeps
a move one set-based UPDATE (no per-run arithmetic on its state).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from conveyor.domain.automations.model import Automation, Node
from conveyor.domain.errors import FieldError, InvalidInput

REMOVED, CHANGED, SAME = "removed", "changed", "same"


@dataclass(frozen=True)
class Position:
    """Active runs at one node of one version, and what the new version does to that node."""

    version: int
    node: str
    type: str  # the node's type in its own version ("?" if that version lacks it)
    count: int
    change: str  # removed | changed | same (against the new version)


@dataclass(frozen=True)
class Move:
    """Every active run at `from_node` of `from_version` goes to `to_node` of the new version."""

    from_version: int
    from_node: str
    to_node: str

    def label(self, new_version: int) -> str:
        return f"v{self.from_version}:{self.from_node} to v{new_version}:{self.to_node}"


class MoveError(InvalidInput):
    """A move the plan cannot carry out; names the move's field and the node."""

    def __init__(self, field: str, node: str, detail: str) -> None:
        super().__init__(field, detail)
        self.node = node


class UnknownPosition(MoveError):
    """The move's origin is not a node of that version (or not an older version)."""


class UnknownTarget(MoveError):
    """The move's target is not a node of the new version."""


class DuplicateMove(MoveError):
    """Two moves for the same origin."""


def change_of(node_id: str, old: Automation, new: Automation) -> str:
    """What the new version did to a node of the old one: removed, changed (its type, targets,
    settings or condition differ) or the same."""
    before, after = old.nodes.get(node_id), new.nodes.get(node_id)
    if after is None:
        return REMOVED
    if before is None or before != after:
        return CHANGED
    return SAME


def positions(
    versions: Mapping[int, Automation],
    counts: Mapping[tuple[int, str], int],
    new: Automation,
) -> list[Position]:
    """Where contacts are, per (version, node) with active runs, newest version first and in
    each version's file order; each with what `new` does to its node."""
    out: list[Position] = []
    for version in sorted({v for v, _ in counts}, reverse=True):
        automation = versions.get(version)
        nodes = [n for v, n in counts if v == version and counts[(v, n)] > 0]
        order = list(automation.nodes) if automation is not None else []
        nodes.sort(key=lambda n: (order.index(n) if n in order else len(order), n))
        for node_id in nodes:
            node = automation.nodes.get(node_id) if automation is not None else None
            change = change_of(node_id, automation, new) if automation is not None else REMOVED
            out.append(
                Position(
                    version, node_id, node.type if node else "?", counts[(version, node_id)], change
                )
            )
    return out


def targets(new: Automation) -> list[Node]:
    """Where a move may take contacts: any node of the new version, in the file's order."""
    return list(new.nodes.values())


def due_at(node: Node, now: datetime) -> datetime | None:
    """When a run moved to `node` at `now` is next due (see the module's docstring): a `wait`
    starts over (now + its duration); a condition wait is checked now; a wait on a date or a
    time of day has a moment of its own, per contact (None: not known here); the rest: now."""
    if node.type == "wait":
        return now + timedelta(seconds=int(node.config["for"]))
    if node.type == "wait_until" and node.condition is None:
        return None
    return now


def validate(
    moves: Sequence[Move], versions: Mapping[int, Automation], new: Automation, new_version: int
) -> list[Move]:
    """The plan, checked: each origin a node of an older stored version, each target a node of
    the new one, one move per origin. Raises the first error; every error is in `.errors`."""
    errors: list[MoveError] = []
    seen: set[tuple[int, str]] = set()
    for i, move in enumerate(moves):
        old = versions.get(move.from_version)
        if old is None or move.from_version >= new_version:
            errors.append(
                UnknownPosition(
                    f"moves.{i}.from_version",
                    move.from_node,
                    f"version {move.from_version} is not an earlier version of this automation",
                )
            )
        elif move.from_node not in old.nodes:
            errors.append(
                UnknownPosition(
                    f"moves.{i}.from_node",
                    move.from_node,
                    f"version {move.from_version} has no node '{move.from_node}'",
                )
            )
        elif (move.from_version, move.from_node) in seen:
            errors.append(
                DuplicateMove(
                    f"moves.{i}.from_node",
                    move.from_node,
                    f"v{move.from_version}:{move.from_node} is moved twice; choose one target",
                )
            )
        if move.to_node not in new.nodes:
            known = ", ".join(new.nodes)
            errors.append(
                UnknownTarget(
                    f"moves.{i}.to_node",
                    move.to_node,
                    f"the new version has no node '{move.to_node}' (it has {known})",
                )
            )
        seen.add((move.from_version, move.from_node))
    if errors:
        first = errors[0]
        first.errors = [FieldError(e.field, e.reason) for e in errors]
        raise first
    return list(moves)
