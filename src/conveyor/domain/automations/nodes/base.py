"""What a node type is: its fields (validated by the parser) and its semantics (a pure handler).

A handler is a pure function of (node, run, contact facts, now, evaluator) → Result: no I/O and
no clock. Adding a node type is one NodeType in one module of this package, plus its tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.domain.automations.effects import Effect
from conveyor.domain.automations.model import Node
from conveyor.domain.conditions import Condition
from conveyor.domain.evaluation import Evaluator, Snapshot
from conveyor.domain.fields import parse_datetime


@dataclass(frozen=True)
class RunView:
    """What a handler may know of the run it advances."""

    id: int
    automation: str
    contact_id: int
    node: str
    state: dict[str, Any]
    entered_at: datetime
    trigger: dict[str, Any]  # the trigger event's properties (system events add "event")
    list: str | None = None  # the list whose subscription enrolled it, if that is its trigger
    winners: Mapping[str, str] = field(default_factory=dict)  # decided split tests: node → path


@dataclass
class Result:
    kind: str  # "next", "wait", "end"
    outcome: str
    reason: Any = None
    next: str | None = None
    until: datetime | None = None  # for waits; None = until an event wakes it
    state: dict[str, Any] = field(default_factory=dict)
    effects: tuple[Effect, ...] = ()


Handler = Callable[[Node, RunView, Snapshot, datetime, Evaluator], Result]
Check = Callable[[dict[str, Any], Condition | None, str], None]


@dataclass(frozen=True)
class NodeType:
    """One kind of station: its spec and its semantics, in one object.

    `fields` maps each key a node of this type takes to its rule (`duration`, `condition`,
    `node`, `text`, `number`, `paths`, `at`, `weekdays`, `choice`, `list`, `any`; a trailing `!`
    makes it required); `choices` lists the values of its `choice` fields; `check` validates
    what single fields cannot. `waits`: a run may stop here, so a loop through it is allowed.
    `follows`: without `next`, it leads to the node after it in the file.
    """

    name: str
    category: str  # flow | action | send
    fields: dict[str, str]
    run: Handler
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    check: Check | None = None
    waits: bool = False
    follows: bool = True
    channel: str | None = None  # send types: the outbox channel


def state_time(run: RunView, key: str) -> datetime | None:
    raw = run.state.get(key)
    return parse_datetime(raw) if raw else None


def human(seconds: int) -> str:
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return " ".join(parts) or "0 seconds"


def target(name: str | None) -> str | None:
    """A branch target as the run follows it: `end` (or nothing) ends the run."""
    return None if name in (None, "end") else name
