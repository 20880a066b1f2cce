"""What each node does: pure functions of (run, node, contact snapshot, now) → step result.

No I/O and no clock: the worker hands in `now` and the contact's snapshot, then commits the
result — the run's new state, the step log entry and the effects — in one transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.automations import SEND_TYPES, Automation, Node
from conveyor.domain.conditions import parse_duration
from conveyor.domain.evaluation import Evaluator, Snapshot, Verdict, lookup
from conveyor.domain.fields import format_datetime, parse_datetime

# --- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContactChange:
    """An internal effect on the contact: applied atomically with the step."""

    action: str  # one of ACTION_TYPES: add_tag, set_field, subscribe, adjust_score, …
    target: str | None  # tag, field or list
    value: Any = None


@dataclass(frozen=True)
class Send:
    """An external effect: one outbox row, delivered later by the channels."""

    channel: str
    template: str | None
    message_class: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Enroll:
    automation: str


@dataclass(frozen=True)
class EndOther:
    automation: str


Effect = ContactChange | Send | Enroll | EndOther


@dataclass(frozen=True)
class RunView:
    id: int
    automation: str
    contact_id: int
    node: str
    state: dict[str, Any]
    entered_at: datetime
    trigger: dict[str, Any]  # the trigger event's properties


@dataclass
class Result:
    kind: str  # "next", "wait", "end"
    outcome: str
    reason: Any = None
    next: str | None = None
    until: datetime | None = None  # for waits; None = until an event wakes it
    state: dict[str, Any] = field(default_factory=dict)
    effects: tuple[Effect, ...] = ()


def execute(
    node: Node, run: RunView, snap: Snapshot, now: datetime, evaluator: Evaluator
) -> Result:
    handler = _HANDLERS.get(node.type)
    if handler is None:
        handler = _send if node.type in SEND_TYPES else _action
    return handler(node, run, snap, now, evaluator)


def _wait(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    until = _state_time(run, "until") or now + timedelta(seconds=node.config["for"])
    if now >= until:
        return Result("next", "waited", f"waited {_human(node.config['for'])}", next=node.next)
    return Result(
        "wait",
        "waiting",
        f"until {format_datetime(until)}",
        until=until,
        state={"until": format_datetime(until)},
    )


def _wait_until(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    if node.condition is not None:
        verdict = ev.evaluate(node.condition, snap, now)
        if verdict.ok:
            return Result("next", "met", verdict.as_dict(), next=node.next)
        deadline = _state_time(run, "deadline")
        if deadline is None and "timeout" in node.config:
            deadline = now + timedelta(seconds=node.config["timeout"])
        if deadline is not None and now >= deadline:
            target = node.config.get("on_timeout", node.next)
            return Result(
                "next",
                "timeout",
                {"timeout": _human(node.config["timeout"]), "last": verdict.as_dict()},
                next=None if target == "end" else target,
            )
        state = {"deadline": format_datetime(deadline)} if deadline else {}
        return Result("wait", "waiting", verdict.as_dict(), until=deadline, state=state)
    target = _state_time(run, "until") or _moment(node, run, snap, now)
    if target is None:
        return Result("next", "skipped", f"{node.config.get('field')} is not set", next=node.next)
    if now >= target:
        return Result("next", "reached", f"at {format_datetime(target)}", next=node.next)
    return Result(
        "wait",
        "waiting",
        f"until {format_datetime(target)}",
        until=target,
        state={"until": format_datetime(target)},
    )


def _moment(node: Node, run: RunView, snap: Snapshot, now: datetime) -> datetime | None:
    """When a wait_until on a date, a time of day or a date field ends (contact's timezone)."""
    zone = ZoneInfo(snap.timezone)
    if "until" in node.config:
        return parse_datetime(node.config["until"])
    at = time.fromisoformat(node.config.get("at", "00:00"))
    if "field" in node.config:
        raw = snap.fields.get(node.config["field"])
        moment = parse_datetime(raw) if isinstance(raw, str) and "T" in raw else None
        if moment is None:
            try:
                day = date.fromisoformat(raw) if isinstance(raw, str) else None
            except ValueError:
                day = None
            if day is None:
                return None
            moment = datetime.combine(day, at, zone)
        offset = node.config.get("offset")
        if offset:
            text = str(offset).strip()
            sign = -1 if text.startswith("-") else 1
            moment += sign * timedelta(seconds=parse_duration(text.lstrip("+-"), "offset"))
        return moment.astimezone(UTC)
    local = now.astimezone(zone)
    weekdays = node.config.get("weekdays", list(range(7)))
    for days in range(8):
        day = local.date() + timedelta(days=days)
        candidate = datetime.combine(day, at, zone)
        if candidate.weekday() in weekdays and candidate >= local:
            return candidate.astimezone(UTC)
    raise AssertionError("a week always has a matching day")


def _if(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    verdict = ev.evaluate(node.condition, snap, now)  # type: ignore[arg-type]
    target = node.config["then"] if verdict.ok else node.config["else"]
    return Result(
        "next",
        "then" if verdict.ok else "else",
        verdict.as_dict(),
        next=None if target == "end" else target,
    )


def split_point(automation: str, contact_id: int) -> float:
    """A stable number in [0, 1) per contact and automation: replays take the same path."""
    digest = hashlib.sha256(f"{automation}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    paths = node.config["paths"]
    point = split_point(run.automation, run.contact_id) * sum(p["weight"] for p in paths)
    for path in paths:
        point -= path["weight"]
        if point < 0:
            break
    total = sum(p["weight"] for p in paths)
    return Result(
        "next",
        path["name"],
        f"{path['name']} ({path['weight'] / total:.0%} of contacts)",
        next=None if path["next"] == "end" else path["next"],
    )


def _goal(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    verdict = ev.evaluate(node.condition, snap, now)  # type: ignore[arg-type]
    if verdict.ok:
        return Result("next", "goal_reached", verdict.as_dict(), next=node.next)
    otherwise = node.config.get("otherwise", "continue")
    if otherwise == "continue":
        return Result("next", "goal_skipped", verdict.as_dict(), next=node.next)
    if otherwise == "end":
        return Result("end", "goal_skipped", verdict.as_dict())
    deadline = _state_time(run, "deadline")
    if deadline is None and "timeout" in node.config:
        deadline = now + timedelta(seconds=node.config["timeout"])
    if deadline is not None and now >= deadline:
        return Result(
            "end",
            "goal_skipped",
            {"timeout": _human(node.config["timeout"]), "last": verdict.as_dict()},
        )
    return Result(
        "wait",
        "waiting_for_goal",
        verdict.as_dict(),
        until=deadline,
        state={"deadline": format_datetime(deadline)} if deadline else {},
    )


def _end(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    return Result("end", "ended", "end node")


def _start(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    other = node.config["automation"]
    return Result(
        "next", "started", f"enrolled in {other}", next=node.next, effects=(Enroll(other),)
    )


def _exit_other(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    other = node.config["automation"]
    return Result(
        "next", "ended_other", f"ended run in {other}", next=node.next, effects=(EndOther(other),)
    )


_TEMPLATE = re.compile(r"\{\{\s*event\.([A-Za-z0-9_.\-]+)\s*\}\}")


def render_value(value: Any, trigger: dict[str, Any]) -> Any:
    """`{{ event.total }}` is the trigger event's property (typed, when it is the whole value)."""
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return lookup(trigger, tuple(whole.group(1).split(".")))[1]

    def sub(match: re.Match[str]) -> str:
        found, got = lookup(trigger, tuple(match.group(1).split(".")))
        return "" if not found or got is None else str(got)

    return _TEMPLATE.sub(sub, value)


def _action(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    c = node.config
    target = c.get("tag") or c.get("field") or c.get("list")
    if node.type == "adjust_score":
        value = c["by"]
    elif node.type == "increment_field":
        value = c.get("by", 1)
    else:
        value = render_value(c.get("value"), run.trigger)
    change = ContactChange(node.type, target, value)
    shown = f"{node.type} {target or ''} {'' if value is None else value}".strip()
    return Result("next", "done", shown, next=node.next, effects=(change,))


def _send(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    c = node.config
    message_class = c.get(
        "class", "transactional" if node.type in ("notify_team", "webhook") else "marketing"
    )
    config = {k: v for k, v in c.items() if k not in ("template", "class", "name")}
    send = Send(SEND_TYPES[node.type], c.get("template"), message_class, config)
    return Result(
        "next",
        "queued",
        f"{SEND_TYPES[node.type]} {c.get('template') or c.get('url')} queued",
        next=node.next,
        effects=(send,),
    )


_HANDLERS = {
    "wait": _wait,
    "wait_until": _wait_until,
    "if": _if,
    "split": _split,
    "goal": _goal,
    "end": _end,
    "start_automation": _start,
    "exit_automation": _exit_other,
}


# --- goals and exits ---------------------------------------------------------------------------


def goal_ahead(
    automation: Automation, node_id: str, snap: Snapshot, now: datetime, ev: Evaluator
) -> tuple[Node, Verdict] | None:
    """The first goal after the run's node (in the file's order) whose condition is met."""
    order = list(automation.nodes)
    position = order.index(node_id) if node_id in order else -1
    for goal in automation.goals():
        if order.index(goal.id) > position:
            verdict = ev.evaluate(goal.condition, snap, now)  # type: ignore[arg-type]
            if verdict.ok:
                return goal, verdict
    return None


def _state_time(run: RunView, key: str) -> datetime | None:
    raw = run.state.get(key)
    return parse_datetime(raw) if raw else None


def _human(seconds: int) -> str:
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n} {unit}{'s' if n != 1 else ''}")
    return " ".join(parts) or "0 seconds"
