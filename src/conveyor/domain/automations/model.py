"""An automation as data: triggers, entry rules, priority group, exit condition, nodes."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from conveyor.domain.conditions import Condition, PropertyIs

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
END = "end"
ON_CONFLICT = ("queue", "skip", "preempt")
PRIORITY_LEVELS = range(-1000, 1001)
BRANCH_KEYS = ("then", "else", "on_timeout")  # config keys that name other nodes


@dataclass(frozen=True)
class DateTrigger:
    """Enroll on the day a date field says (± offset), at a local time of day; yearly if asked."""

    field: str
    yearly: bool
    offset_days: int  # -3: three days before the date
    at: str  # "09:00", in the contact's timezone


@dataclass(frozen=True)
class Trigger:
    """Enroll on event `name` whose properties pass `where` (every preset reduces to this),
    or, for a date trigger, on a day of the calendar (`date`; `name` is then unused)."""

    name: str
    where: tuple[PropertyIs, ...] = ()
    url_pattern: str | None = None  # page visited: a glob over properties.url
    date: DateTrigger | None = None


@dataclass(frozen=True)
class EntryRules:
    repeat: str = "once"  # once | every_time | after
    after_seconds: int | None = None
    max_per_day: int | None = None
    condition: Condition | None = None  # the contact must meet it
    unless: Condition | None = None  # and must not meet this
    queue_behind: tuple[str, ...] = ()  # wait until the contact has left these automations


@dataclass(frozen=True)
class Priority:
    """Membership of a priority group: a contact is inside at most one automation of the group.

    A contact qualifying for this automation while inside another of the group is skipped,
    queued until that run finishes, or (preempt) ends it if this level is higher — else queued.
    The newcomer's `on_conflict` decides. The level also orders this automation's outbox rows.
    """

    group: str
    level: int = 0
    on_conflict: str = "queue"  # queue | skip | preempt


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    next: str | None = None  # None: the end
    config: dict[str, Any] = field(default_factory=dict)  # validated, type-specific
    condition: Condition | None = None

    def targets(self) -> list[str]:
        """Every node this one can lead to."""
        out = [self.next] if self.next else []
        for key in BRANCH_KEYS:
            if self.config.get(key):
                out.append(self.config[key])
        out += [p["next"] for p in self.config.get("paths", []) if p["next"]]
        return [t for t in out if t != END]


@dataclass(frozen=True)
class Automation:
    key: str
    name: str
    triggers: tuple[Trigger, ...]
    entry: EntryRules
    exit_when: Condition | None
    nodes: dict[str, Node]
    start: str
    priority: Priority | None = None

    def goals(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.type == "goal"]

    def goals_after(self, node_id: str) -> tuple[Node, ...]:
        """The goals after this node in the file's order: where a run there may jump to."""
        found = self._goals_after.get(node_id)
        return tuple(self.goals()) if found is None else found

    @cached_property
    def _goals_after(self) -> dict[str, tuple[Node, ...]]:
        order = list(self.nodes)
        return {
            here: tuple(g for g in self.goals() if order.index(g.id) > order.index(here))
            for here in order
        }

    @property
    def level(self) -> int:
        """Its priority level: orders its entries against its group's and its outbox rows."""
        return self.priority.level if self.priority is not None else 0

    def entry_conditions(self) -> list[Condition]:
        return [c for c in (self.entry.condition, self.entry.unless) if c is not None]

    def conditions(self) -> list[Condition]:
        """Every condition a run of it may evaluate: nodes, exit, entry."""
        out = [n.condition for n in self.nodes.values() if n.condition is not None]
        if self.exit_when is not None:
            out.append(self.exit_when)
        return out + self.entry_conditions()

    def watched(self, node_id: str | None) -> list[Condition]:
        """What can wake a run at this node: its own condition, goals, and the exit condition."""
        out = [g.condition for g in self.goals() if g.condition is not None]
        if self.exit_when is not None:
            out.append(self.exit_when)
        node = self.nodes.get(node_id) if node_id else None
        if node is not None and node.condition is not None:
            out.append(node.condition)
        return out


def webhook_event(automation_key: str) -> str:
    """The event an automation's inbound webhook records (its trigger)."""
    return f"webhook.{automation_key}"
