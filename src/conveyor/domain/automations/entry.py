"""Whether a contact enters an automation now: repeat rules, conditions, queues, priority groups.

`decide` is pure: it is handed the contact's unfinished runs, the entry times of its runs of
this automation, its facts and `now`, and says Enter, Queue or Skip — with the reason the
contact's timeline shows. A trigger that arrives while the contact is inside the automation is
skipped (as ActiveCampaign does): one journey at a time, and the skip is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from conveyor.domain.automations.model import Automation, Priority
from conveyor.domain.evaluation import Evaluator, Snapshot
from conveyor.domain.fields import format_datetime


@dataclass(frozen=True)
class RunRef:
    """One of the contact's unfinished runs, as entry rules see it."""

    id: int | None  # None: entered in this same tick, not stored yet
    automation: str
    status: str  # active | queued
    entered_at: datetime
    priority: Priority | None = None


@dataclass(frozen=True)
class Decision:
    outcome: str  # enter | queue | skip
    reason: str = ""  # what the caller and the timeline are told
    note: dict[str, Any] = field(default_factory=dict)  # because, group, preempted
    preempt: tuple[RunRef, ...] = ()  # runs a higher-priority entry ends
    blocking: RunRef | None = None  # the run a skip or queue is about, if any

    @property
    def summary(self) -> str:
        """What the caller is told: `entered`, `queued: behind X`, `skipped: once per contact`."""
        if self.outcome == "enter":
            return "entered"
        return f"{'skipped' if self.outcome == 'skip' else 'queued'}: {self.reason}"


def decide(
    automation: Automation,
    *,
    inside: Sequence[RunRef],
    entries: Sequence[datetime],
    facts: Snapshot,
    now: datetime,
    evaluator: Evaluator,
    running: int | None = None,
) -> Decision:
    """`inside`: the contact's unfinished runs of every automation; `entries`: when it entered
    this one before (finished runs included); `running`: the run now starting this one, if any,
    which a preemption must not end under itself."""
    entry = automation.entry
    mine = [r for r in inside if r.automation == automation.key]
    if entry.repeat == "once" and entries:
        return Decision("skip", "entered before (once per contact)")
    if mine:
        since = format_datetime(min(r.entered_at for r in mine))
        return Decision("skip", f"already inside since {since}", blocking=mine[0])
    if (
        entry.repeat == "after"
        and entries
        and max(entries) > now - timedelta(seconds=entry.after_seconds or 0)
    ):
        return Decision("skip", "entered too recently")
    if entry.max_per_day and sum(e > now - timedelta(days=1) for e in entries) >= entry.max_per_day:
        return Decision("skip", "daily entry limit")
    if entry.condition is not None and not evaluator.evaluate(entry.condition, facts, now).ok:
        return Decision("skip", "entry condition not met")
    if entry.unless is not None and evaluator.evaluate(entry.unless, facts, now).ok:
        return Decision("skip", "excluded")
    behind = [r for r in inside if r.automation in entry.queue_behind]
    if behind:
        because = behind[0].automation
        return Decision("queue", f"behind {because}", {"because": because}, (), behind[0])
    group = automation.priority
    rivals = [
        r
        for r in inside
        if group is not None and r.priority is not None and r.priority.group == group.group
    ]
    if group is None or not rivals:
        return Decision("enter")
    # Name the run holding the slot (an active one) rather than one waiting for it.
    first = next((r for r in rivals if r.status == "active"), rivals[0])
    note = {"because": first.automation, "group": group.group}
    reason = f"inside {first.automation} (priority group {group.group})"
    if group.on_conflict == "skip":
        return Decision("skip", reason, note, (), first)
    outranks = all(r.priority.level < group.level for r in rivals if r.priority)
    if group.on_conflict == "preempt" and outranks and all(r.id != running for r in rivals):
        note = {"preempted": [r.automation for r in rivals], "group": group.group}
        return Decision("enter", "", note, tuple(rivals))
    return Decision("queue", reason, note, (), first)


def releasable(automation: Automation, run_id: int | None, inside: Sequence[RunRef]) -> bool:
    """Whether a queued run of `automation` may go in now that something ended: nothing it
    queues behind is left, and no run of its priority group holds the slot."""
    others = [r for r in inside if r.id != run_id]
    if any(r.automation in automation.entry.queue_behind for r in others):
        return False
    group = automation.priority
    return group is None or not any(
        r.status == "active" and r.priority is not None and r.priority.group == group.group
        for r in others
        if r.automation != automation.key
    )
