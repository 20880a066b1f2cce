"""Advancing one run: the exit check, goal jumps, then node after node until a wait or the end.

`advance` is pure: handed the automation, the run, the contact's facts and `now`, it returns
the steps to log, the effects to carry out (each with the node and step that made it) and the
run's new position. Contact changes are applied to the facts as it goes, so later conditions
of the same run see them; the shell persists the same changes, the simulator only the facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.domain.automations.effects import ContactChange, CrmChange, Effect, Record
from conveyor.domain.automations.model import Automation, Node
from conveyor.domain.automations.nodes import RunView, execute
from conveyor.domain.automations.nodes.actions import ContactRules, apply_change
from conveyor.domain.automations.nodes.crm import apply_deal_change
from conveyor.domain.conditions import Condition
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator, Snapshot, Verdict

MAX_STEPS = 100  # per advance: a longer chain carries on in the next tick


@dataclass(frozen=True)
class RunState:
    """Where a run stands: what `advance` reads."""

    id: int
    contact_id: int
    node: str
    state: dict[str, Any]
    steps: int  # how many steps it has logged
    entered_at: datetime
    trigger: dict[str, Any]
    winners: Mapping[str, str] = field(default_factory=dict)  # decided split tests: node → path


@dataclass(frozen=True)
class Step:
    node: str
    outcome: str
    reason: dict[str, Any]


@dataclass(frozen=True)
class Done:
    """An effect, with the node and the run's step count that produced it (its identity)."""

    node: str
    step: int
    effect: Effect


@dataclass
class Advance:
    node: str
    state: dict[str, Any]
    steps: int
    wake_at: datetime | None = None  # None with no outcome: until an event wakes it
    outcome: str | None = None  # set when the run finished: completed, goal_reached, …
    logged: list[Step] = field(default_factory=list)
    effects: list[Done] = field(default_factory=list)

    def log(self, node: str, outcome: str, reason: Any) -> None:
        self.logged.append(
            Step(node, outcome, reason if isinstance(reason, dict) else {"why": reason})
        )
        self.steps += 1


def advance(
    automation: Automation,
    run: RunState,
    facts: Snapshot,
    now: datetime,
    evaluator: Evaluator,
    rules: ContactRules,
) -> Advance:
    facts.entered_at = run.entered_at
    out = Advance(run.node, dict(run.state), run.steps)
    trigger_list = (
        run.trigger.get("list") if run.trigger.get("event") == "list.subscribed" else None
    )
    # The exit and goal conditions are checked before every node, but within one advance
    # `now` stands still and the facts change only where an effect is applied to them: their
    # verdicts are kept (by condition) until then, and a chain of nodes asks each once.
    known: dict[int, Verdict] = {}
    for _ in range(MAX_STEPS):
        if automation.exit_when is not None:
            verdict = _verdict(automation.exit_when, facts, now, evaluator, known)
            if verdict.ok:
                out.log(out.node, "exited", verdict.as_dict())
                out.outcome = "exited"
                return out
        jump = goal_ahead(automation, out.node, facts, now, evaluator, known)
        if jump is not None:
            goal, verdict = jump
            out.log(goal.id, "goal_reached", verdict.as_dict())
            _record(out, goal.id, "automation.goal_reached", automation.key)
            out.state = {}
            if goal.next is None:
                out.outcome = "goal_reached"
                return out
            out.node = goal.next
            continue
        node = automation.nodes[out.node]
        view = RunView(
            run.id,
            automation.key,
            run.contact_id,
            out.node,
            out.state,
            run.entered_at,
            run.trigger,
            trigger_list if isinstance(trigger_list, str) else None,
            run.winners,
        )
        result = execute(node, view, facts, now, evaluator)
        if result.kind != "wait" or not out.state:  # a wait is logged once, not at each wake-up
            out.log(out.node, result.outcome, result.reason)
        if node.type == "goal" and result.outcome in ("goal_reached", "goal_skipped"):
            _record(out, node.id, f"automation.{result.outcome}", automation.key)
        for effect in result.effects:
            if isinstance(effect, (ContactChange, CrmChange)):
                known.clear()  # the facts may change: conditions are asked again
            if isinstance(effect, ContactChange):
                try:
                    apply_change(effect, facts, rules)
                except InvalidInput as exc:
                    out.log(out.node, "failed", {"why": exc.detail})
                    continue
            elif isinstance(effect, CrmChange):
                apply_deal_change(effect, facts)
            out.effects.append(Done(out.node, out.steps, effect))
        if result.kind == "wait":
            out.state, out.wake_at = result.state, result.until
            return out
        if result.kind == "end":
            out.outcome = "goal_skipped" if result.outcome == "goal_skipped" else "ended"
            return out
        out.state = {}
        if result.next is None:
            out.outcome = "completed"
            return out
        out.node = result.next
    out.wake_at = now  # a long chain: carry on next tick
    return out


def _record(out: Advance, node: str, name: str, automation: str) -> None:
    out.effects.append(
        Done(node, out.steps, Record(name, {"automation": automation, "goal": node}))
    )


def goal_ahead(
    automation: Automation,
    node_id: str,
    facts: Snapshot,
    now: datetime,
    ev: Evaluator,
    known: dict[int, Verdict] | None = None,
) -> tuple[Node, Verdict] | None:
    """The first goal after the run's node (in the file's order) whose condition is met.
    `known`: verdicts already reached for these facts at `now` (by condition), added to."""
    for goal in automation.goals_after(node_id):
        condition = goal.condition
        assert condition is not None
        verdict = (
            ev.evaluate(condition, facts, now)
            if known is None
            else _verdict(condition, facts, now, ev, known)
        )
        if verdict.ok:
            return goal, verdict
    return None


def _verdict(
    condition: Condition, facts: Snapshot, now: datetime, ev: Evaluator, known: dict[int, Verdict]
) -> Verdict:
    found = known.get(id(condition))
    if found is None:
        found = known[id(condition)] = ev.evaluate(condition, facts, now)
    return found
