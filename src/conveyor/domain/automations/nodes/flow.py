"""Flow control: wait, wait until, if/else, split, goal, end, start or end another automation."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.automations.effects import EndOther, Enroll
from conveyor.domain.automations.model import Node
from conveyor.domain.automations.nodes.base import (
    NodeType,
    Result,
    RunView,
    human,
    state_time,
    target,
)
from conveyor.domain.conditions import Condition, parse_duration
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator, Snapshot
from conveyor.domain.experiments import parse_test
from conveyor.domain.fields import format_datetime, parse_datetime


def _wait(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    until = state_time(run, "until") or now + timedelta(seconds=node.config["for"])
    if now >= until:
        return Result("next", "waited", f"waited {human(node.config['for'])}", next=node.next)
    return _until(until)


def _check_wait(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    if "for" not in config:
        raise InvalidInput(f"{path}.for", "a wait node needs 'for: 1 day 6 hours'")


def _wait_until(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    if node.condition is not None:
        verdict = ev.evaluate(node.condition, snap, now)
        if verdict.ok:
            return Result("next", "met", verdict.as_dict(), next=node.next)
        deadline = _deadline(node, run, now)
        if deadline is not None and now >= deadline:
            return Result(
                "next",
                "timeout",
                {"timeout": human(node.config["timeout"]), "last": verdict.as_dict()},
                next=target(node.config.get("on_timeout", node.next)),
            )
        state = {"deadline": format_datetime(deadline)} if deadline else {}
        return Result("wait", "waiting", verdict.as_dict(), until=deadline, state=state)
    moment = state_time(run, "until") or _moment(node, snap, now)
    if moment is None:
        return Result("next", "skipped", f"{node.config.get('field')} is not set", next=node.next)
    if now >= moment:
        return Result("next", "reached", f"at {format_datetime(moment)}", next=node.next)
    return _until(moment)


def _until(moment: datetime) -> Result:
    """Waiting for a moment: the run sleeps until then (the moment is kept in its state)."""
    shown = format_datetime(moment)
    return Result("wait", "waiting", f"until {shown}", until=moment, state={"until": shown})


def _deadline(node: Node, run: RunView, now: datetime) -> datetime | None:
    """When a condition wait (or a waiting goal) times out: set on arrival, kept in the state."""
    deadline = state_time(run, "deadline")
    if deadline is None and "timeout" in node.config:
        deadline = now + timedelta(seconds=node.config["timeout"])
    return deadline


def _moment(node: Node, snap: Snapshot, now: datetime) -> datetime | None:
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


def _check_wait_until(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    ways = [
        k
        for k in ("condition", "until", "at", "field")
        if k in config or (k == "condition" and condition)
    ]
    if len(ways) != 1:
        raise InvalidInput(
            path, "wait_until takes one of: condition (with timeout), until, at, field"
        )
    if "on_timeout" in config and "timeout" not in config:
        raise InvalidInput(f"{path}.on_timeout", "goes with a timeout")


def _if(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    verdict = ev.evaluate(node.condition, snap, now)  # type: ignore[arg-type]
    branch = node.config["then"] if verdict.ok else node.config["else"]
    outcome = "then" if verdict.ok else "else"
    return Result("next", outcome, verdict.as_dict(), next=target(branch))


def _check_if(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    for key in ("then", "else"):
        if key not in config:
            raise InvalidInput(f"{path}.{key}", "an if node needs both 'then' and 'else' targets")


def split_point(automation: str, contact_id: int) -> float:
    """A stable number in [0, 1) per contact and automation: replays take the same path."""
    digest = hashlib.sha256(f"{automation}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _split(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    paths = node.config["paths"]
    winner = run.winners.get(node.id)
    chosen = next((p for p in paths if p["name"] == winner), None)
    if chosen is not None:  # a decided split test: every later contact takes the winner
        why = f"{chosen['name']} (the winner of this split test)"
        return Result("next", chosen["name"], why, next=target(chosen["next"]))
    total = sum(p["weight"] for p in paths)
    point = split_point(run.automation, run.contact_id) * total
    for path in paths:
        point -= path["weight"]
        if point < 0:
            break
    share = f"{path['name']} ({path['weight'] / total:.0%} of contacts)"
    return Result("next", path["name"], share, next=target(path["next"]))


def _check_split(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    names = [p["name"] for p in config["paths"]]
    if len(set(names)) != len(names):
        raise InvalidInput(f"{path}.paths", "path names must differ")
    if "test" not in config:
        if condition is not None:
            raise InvalidInput(f"{path}.condition", "a split's condition is its test's metric")
        return
    spec = parse_test(config["test"], f"{path}.test")
    if (spec.metric == "condition") != (condition is not None):
        raise InvalidInput(
            f"{path}.condition" if condition is not None else f"{path}.test.metric",
            "metric: condition goes with the node's `condition` (met within the window)",
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
    deadline = _deadline(node, run, now)
    if deadline is not None and now >= deadline:
        return Result(
            "end",
            "goal_skipped",
            {"timeout": human(node.config["timeout"]), "last": verdict.as_dict()},
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


TYPES = (
    NodeType("wait", "flow", {"for": "duration!"}, _wait, check=_check_wait, waits=True),
    NodeType(
        "wait_until",
        "flow",
        {
            "condition": "condition",
            "timeout": "duration",
            "on_timeout": "node",
            "until": "any",
            "at": "at",
            "weekdays": "weekdays",
            "field": "text",
            "offset": "any",
        },
        _wait_until,
        check=_check_wait_until,
        waits=True,
    ),
    NodeType(
        "if",
        "flow",
        {"condition": "condition!", "then": "node", "else": "node"},
        _if,
        check=_check_if,
        follows=False,
    ),
    NodeType(
        "split",
        "flow",
        {"paths": "paths!", "test": "any", "condition": "condition"},
        _split,
        check=_check_split,
        follows=False,
    ),
    NodeType(
        "goal",
        "flow",
        {"condition": "condition!", "otherwise": "choice", "timeout": "duration"},
        _goal,
        choices={"otherwise": ("continue", "wait", "end")},
        waits=True,
    ),
    NodeType("end", "flow", {}, _end, follows=False),
    NodeType("start_automation", "flow", {"automation": "text!"}, _start),
    NodeType("exit_automation", "flow", {"automation": "text!"}, _exit_other),
)
