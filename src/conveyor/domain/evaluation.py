"""Deciding a condition for one contact at a time `now`, with an explanation of why.

The SQL compiler in the store implements the same semantics for whole audiences; a property
test holds the two to agreement. The rules both follow:

- A value of the wrong JSON type counts as missing (a number field holding text is unset).
- Comparisons with a missing value are false, except the negative ones (`ne`, `not_in`,
  `not_contains`) which are true, and `is_empty`.
- Dates ("today", "this month", anniversaries) are the contact's own calendar days, in its
  timezone (the workspace's when it has none). Text comparisons are case-sensitive.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.conditions import (
    AUTOMATION_EVENTS,
    COMPLETED_OUTCOMES,
    DEAL_EVENTS,
    All,
    AnyOf,
    Condition,
    FieldIs,
    HasDeal,
    HasTags,
    InAutomation,
    InList,
    InSegment,
    Never,
    Not,
    Performed,
    PropertyIs,
    ScoreIs,
    Window,
)
from conveyor.domain.fields import FieldType, parse_datetime
from conveyor.domain.scoring import ScoreState, compare


@dataclass(frozen=True)
class EventFact:
    name: str
    timestamp: datetime
    properties: dict[str, Any]
    kind: str = "track"  # track, page, identify, …; "system" for what Conveyor itself records


@dataclass(frozen=True)
class RunFact:
    """One of the contact's unfinished runs (active, or queued behind another automation)."""

    automation: str  # the automation's key
    entered_at: datetime


@dataclass(frozen=True)
class DealFact:
    """A deal the contact is the main contact of, as deal conditions see it."""

    id: int
    pipeline: str
    stage: str
    status: str
    value_minor: int


@dataclass
class Snapshot:
    """What the evaluator knows of one contact."""

    standard: dict[str, Any]  # email, phone, names, timezone, locale, external_id
    score: int
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    tags: set[str]
    lists: dict[str, str]
    events: list[EventFact] = field(default_factory=list)
    runs: list[RunFact] = field(default_factory=list)
    timezone: str = "UTC"  # the contact's, or the workspace's default
    entered_at: datetime | None = None  # when evaluated inside an automation run
    deals: list[DealFact] = field(default_factory=list)  # loaded when a condition asks
    scores: dict[str, ScoreState] = field(default_factory=dict)  # named scores (0 when absent)

    def score_value(self, name: str, now: datetime) -> float:
        state = self.scores.get(name)
        return 0.0 if state is None else state.value(now)


@dataclass
class Verdict:
    ok: bool
    why: str
    children: list[Verdict] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "why": self.why}
        if self.children:
            out["children"] = [c.as_dict() for c in self.children]
        return out


class Evaluator:
    def __init__(self, segments: dict[str, Condition] | None = None) -> None:
        self.segments = segments or {}

    def evaluate(self, condition: Condition, snap: Snapshot, now: datetime) -> Verdict:
        return self._eval(condition, snap, now)

    def _eval(self, c: Condition, snap: Snapshot, now: datetime) -> Verdict:
        if isinstance(c, All):
            kids = [self._eval(item, snap, now) for item in c.items]
            ok = all(k.ok for k in kids)
            return Verdict(ok, f"all of {len(kids)}: {sum(k.ok for k in kids)} true", kids)
        if isinstance(c, AnyOf):
            kids = [self._eval(item, snap, now) for item in c.items]
            ok = any(k.ok for k in kids)
            return Verdict(ok, f"any of {len(kids)}: {sum(k.ok for k in kids)} true", kids)
        if isinstance(c, Not):
            kid = self._eval(c.item, snap, now)
            return Verdict(not kid.ok, "not", [kid])
        if isinstance(c, FieldIs):
            return _field(c, snap, now)
        if isinstance(c, HasTags):
            have = sorted(set(c.tags) & snap.tags)
            ok = bool(have) if c.mode == "any" else len(have) == len(set(c.tags))
            return Verdict(ok, f"tags {c.mode} of {list(c.tags)}: has {have}")
        if isinstance(c, InList):
            status = snap.lists.get(c.list)
            return Verdict(
                status in c.statuses,
                f"list {c.list} is {status or 'not joined'}, needs {'/'.join(c.statuses)}",
            )
        if isinstance(c, Performed):
            return _performed(c, snap, now)
        if isinstance(c, InAutomation):
            return _in_automation(c, snap, now)
        if isinstance(c, HasDeal):
            return _has_deal(c, snap)
        if isinstance(c, ScoreIs):
            x = snap.score_value(c.score, now)
            want = list(c.value) if c.op == "between" else c.value
            return Verdict(compare(c.op, x, c.value), f"score {c.score} {c.op} {want}: is {x:.2f}")
        if isinstance(c, Never):
            return Verdict(False, c.reason)
        if isinstance(c, InSegment):
            inner = self.segments.get(c.key)
            if inner is None:
                return Verdict(False, f"segment {c.key} does not exist")
            kid = self._eval(inner, snap, now)
            return Verdict(kid.ok, f"segment {c.key}", [kid])
        raise TypeError(f"not a condition: {c!r}")


# --- fields ------------------------------------------------------------------------------------


def field_value(c: FieldIs, snap: Snapshot) -> Any:
    """The value as the condition sees it: None when unset or of the wrong type."""
    if c.standard:
        if c.field == "email_domain":
            email = snap.standard.get("email")
            return email.split("@", 1)[1] if email and "@" in email else None
        if c.field == "score":
            return snap.score
        if c.field in ("created_at", "updated_at"):
            return getattr(snap, c.field)
        return snap.standard.get(c.field)
    raw = snap.fields.get(c.field)
    if c.type in (FieldType.TEXT, FieldType.CHOICE, FieldType.DATE):
        return raw if isinstance(raw, str) else None
    if c.type is FieldType.DATETIME:
        return parse_datetime(raw) if isinstance(raw, str) else None
    if c.type is FieldType.NUMBER:
        return raw if isinstance(raw, int | float) and not isinstance(raw, bool) else None
    if c.type is FieldType.BOOLEAN:
        return raw if isinstance(raw, bool) else None
    return raw if isinstance(raw, list) else None


def _field(c: FieldIs, snap: Snapshot, now: datetime) -> Verdict:
    x = field_value(c, snap)
    ok = _compare_field(c, x, snap, now)
    shown = x.isoformat() if isinstance(x, datetime) else x
    want = "" if c.value is None else f" {_show(c.value)}"
    return Verdict(ok, f"{c.field} {c.op}{want}: is {_show(shown)}")


def _compare_field(c: FieldIs, x: Any, snap: Snapshot, now: datetime) -> bool:
    op, v = c.op, c.value
    if op == "is_set":
        return x is not None and x != "" and x != []
    if op == "is_empty":
        return x is None or x == "" or x == []
    if op in ("ne", "not_in", "not_contains") and x is None:
        return True
    if x is None:
        return False
    if c.type is FieldType.MULTI_CHOICE:
        if op == "contains":
            return v in x
        if op == "not_contains":
            return v not in x
        if op == "contains_any":
            return any(item in x for item in v)
        return all(item in x for item in v)  # contains_all
    if c.type is FieldType.DATE:
        return _date_op(op, x, v, snap, now)
    if c.type is FieldType.DATETIME:
        return _datetime_op(op, x, v, snap, now)
    if op == "eq":
        return x == v
    if op == "ne":
        return x != v
    if op == "in":
        return x in v
    if op == "not_in":
        return x not in v
    if op == "contains":
        return v in x
    if op == "not_contains":
        return v not in x
    if op == "starts_with":
        return x.startswith(v)
    if op == "ends_with":
        return x.endswith(v)
    if op == "between":
        return v[0] <= x <= v[1]
    return _cmp(op, x, v)


def local_today(snap_timezone: str, now: datetime) -> date:
    return now.astimezone(ZoneInfo(snap_timezone)).date()


def _date_op(op: str, x: str, v: Any, snap: Snapshot, now: datetime) -> bool:
    today = local_today(snap.timezone, now)
    if op == "eq":
        return x == v
    if op == "before":
        return x < v
    if op == "after":
        return x > v
    if op == "between":
        return v[0] <= x <= v[1]
    if op == "today":
        return x == today.isoformat()
    if op == "this_month":
        return x[:7] == today.isoformat()[:7]
    if op == "anniversary":
        return x[5:10] in anniversary_days(today + timedelta(days=v))
    days = timedelta(days=v // 86400)
    if op == "within_last":
        return (today - days).isoformat() <= x <= today.isoformat()
    if op == "more_than_ago":
        return x < (today - days).isoformat()
    return today.isoformat() <= x <= (today + days).isoformat()  # within_next


def anniversary_days(target: date) -> set[str]:
    """The month-days that have their anniversary on `target` (29 Feb falls on 28 Feb)."""
    days = {target.strftime("%m-%d")}
    if target.month == 2 and target.day == 28 and not calendar.isleap(target.year):
        days.add("02-29")
    return days


def local_window(op: str, snap_timezone: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the contact's local today or this month."""
    zone = ZoneInfo(snap_timezone)
    local = now.astimezone(zone)
    if op == "today":
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        end_day = start.date() + timedelta(days=1)
        end = datetime(end_day.year, end_day.month, end_day.day, tzinfo=zone)
    else:
        start = datetime(local.year, local.month, 1, tzinfo=zone)
        year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
        end = datetime(year, month, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def _datetime_op(op: str, x: datetime, v: Any, snap: Snapshot, now: datetime) -> bool:
    if op == "eq":
        return x == v
    if op == "before":
        return x < v
    if op == "after":
        return x > v
    if op == "between":
        return v[0] <= x <= v[1]
    if op in ("today", "this_month"):
        start, end = local_window(op, snap.timezone, now)
        return start <= x < end
    span = timedelta(seconds=v)
    if op == "within_last":
        return now - span <= x <= now
    if op == "more_than_ago":
        return x < now - span
    return now <= x <= now + span  # within_next


# --- behaviour ---------------------------------------------------------------------------


def lookup(properties: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    """(found, value) at a dotted path; list items by their index."""
    current = properties
    for part in path:
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return False, None
    return True, current


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON scalars that keeps types apart: 1 is not true, "1" is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    return isinstance(a, str) and isinstance(b, str) and a == b


def property_matches(f: PropertyIs, properties: dict[str, Any]) -> bool:
    found, p = lookup(properties, f.path)
    if f.op == "exists":
        return found and p is not None
    if f.op == "ne":
        return not (found and json_equal(p, f.value))
    if not found:
        return False
    if f.op == "eq":
        return json_equal(p, f.value)
    if f.op == "in":
        return any(json_equal(p, v) for v in f.value)
    if f.op == "contains":
        return isinstance(p, str) and f.value in p
    return _is_number(p) and _cmp(f.op, p, f.value)


def matching_events(c: Performed, snap: Snapshot, now: datetime) -> list[EventFact]:
    start, end = c.window.bounds(now, snap.entered_at) if c.window else (None, None)
    return [
        e
        for e in snap.events
        if e.name == c.name
        and (start is None or e.timestamp >= start)
        and (end is None or e.timestamp <= end)
        and all(property_matches(f, e.properties) for f in c.where)
    ]


def aggregate(fn: str, values: list[float]) -> float | None:
    if fn == "sum":
        return sum(values)
    if not values:
        return None
    if fn == "avg":
        return sum(values) / len(values)
    return min(values) if fn == "min" else max(values)


def _performed(c: Performed, snap: Snapshot, now: datetime) -> Verdict:
    events = matching_events(c, snap, now)
    label = _event_label(c)
    if c.aggregate is not None:
        values = [
            v
            for e in events
            for found, v in [lookup(e.properties, c.property)]
            if found and _is_number(v)
        ]
        result = aggregate(c.aggregate, values)
        ok = result is not None and _cmp(c.op, result, c.value)  # type: ignore[arg-type]
        return Verdict(
            ok,
            f"{c.aggregate} of {'.'.join(c.property)} over {label} = {_show(result)}, "
            f"needs {c.op} {c.value}",
        )
    if c.first_last is not None:
        if not events:
            return Verdict(False, f"{label}: never performed")
        moment = (
            min(e.timestamp for e in events)
            if c.first_last == "first"
            else max(e.timestamp for e in events)
        )
        limit = now - timedelta(seconds=c.recency_seconds)  # type: ignore[arg-type]
        ok = moment >= limit if c.recency_op == "within_last" else moment < limit
        return Verdict(
            ok,
            f"{c.first_last} {label} at {moment.isoformat()}, "
            f"needs {c.recency_op} {c.recency_seconds}s",
        )
    n = len(events)
    ok = _cmp(c.count_op, n, c.count)
    return Verdict(ok, f"{label} = {n} times, needs {c.count_op} {c.count}")


def _event_label(c: Performed) -> str:
    label = c.name
    if c.where:
        label += " where " + ", ".join(
            f"{'.'.join(f.path)} {f.op} {_show(f.value)}" for f in c.where
        )
    return label + _window_label(c.window)


def _window_label(window: Window | None) -> str:
    if window is None:
        return ""
    if window.since_entry:
        return " since entry"
    if window.seconds is not None:
        return f" in last {_duration(window.seconds)}"
    return f" between {window.start} and {window.end}"


def _has(properties: dict[str, Any], key: str, values: tuple[str, ...]) -> bool:
    found, value = lookup(properties, (key,))
    return found and any(json_equal(value, v) for v in values)


def automation_events(c: InAutomation, snap: Snapshot, now: datetime) -> list[EventFact]:
    """The engine's events that show the status asked about, in the window."""
    start, end = c.window.bounds(now, snap.entered_at) if c.window else (None, None)
    names = AUTOMATION_EVENTS[c.status]
    return [
        e
        for e in snap.events
        if e.kind == "system"  # a tracked event of the same name proves nothing
        and e.name in names
        and (start is None or e.timestamp >= start)
        and (end is None or e.timestamp <= end)
        and _has(e.properties, "automation", (c.automation,))
        and (c.status != "completed" or _has(e.properties, "outcome", COMPLETED_OUTCOMES))
        and (c.goal is None or _has(e.properties, "goal", (c.goal,)))
    ]


def _in_automation(c: InAutomation, snap: Snapshot, now: datetime) -> Verdict:
    what = f"goal {c.goal} reached" if c.goal else c.status.replace("_", " ")
    label = f"automation {c.automation} {what}{_window_label(c.window)}"
    if c.status != "active":
        n = len(automation_events(c, snap, now))
        return Verdict(n > 0, f"{label} = {n} times, needs gte 1")
    start, end = c.window.bounds(now, snap.entered_at) if c.window else (None, None)
    inside = sorted(r.entered_at for r in snap.runs if r.automation == c.automation)
    if not inside:
        return Verdict(False, f"{label}: not inside now")
    counted = [t for t in inside if (start is None or t >= start) and (end is None or t <= end)]
    since = (counted or inside)[-1].isoformat()
    if counted:
        return Verdict(True, f"{label}: inside since {since}")
    return Verdict(False, f"{label}: inside since {since}, not in the window")


def deal_matches(c: HasDeal, deal: DealFact) -> bool:
    return (
        (c.pipeline is None or deal.pipeline == c.pipeline)
        and (c.stage is None or deal.stage == c.stage)
        and (c.status is None or deal.status == c.status)
        and (c.value_op is None or _cmp(c.value_op, deal.value_minor, c.value_minor))
    )


def _has_deal(c: HasDeal, snap: Snapshot) -> Verdict:
    parts = [
        f"{k} {v}"
        for k, v in (("in", c.pipeline), ("stage", c.stage), ("status", c.status))
        if v is not None
    ]
    if c.value_op is not None:
        parts.append(f"value {c.value_op} {(c.value_minor or 0) / 100:g}")
    found = [d.id for d in snap.deals if deal_matches(c, d)]
    label = f"a deal {' '.join(parts)}".strip()
    return Verdict(bool(found), f"{label}: {f'deals {found}' if found else 'none'}")


def _cmp(op: str, x: Any, v: Any) -> bool:
    if op == "gt":
        return x > v
    if op == "gte":
        return x >= v
    if op == "lt":
        return x < v
    if op == "lte":
        return x <= v
    if op == "eq":
        return x == v
    if op == "ne":
        return x != v
    raise ValueError(op)


def _duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400} days"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} hours"
    return f"{seconds} seconds"


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, datetime):
        return value.isoformat()
    return repr(value)


def event_names(condition: Condition, segments: dict[str, Condition] | None = None) -> set[str]:
    """The events a condition looks at: only these need loading to evaluate it."""

    def leaf(c: Condition) -> set[str]:
        if isinstance(c, Performed):
            return {c.name}
        if isinstance(c, InAutomation):
            return set(AUTOMATION_EVENTS.get(c.status, ()))  # `active` reads the runs
        if isinstance(c, HasDeal):
            return set(DEAL_EVENTS)  # (the snapshot then carries the contact's deals)
        return set()

    return _collect(condition, segments or {}, leaf)


def _collect(
    condition: Condition, segments: dict[str, Condition], leaf: Any, seen: Iterable[str] = ()
) -> set[str]:
    if isinstance(condition, All | AnyOf):
        return set().union(*(_collect(i, segments, leaf, seen) for i in condition.items))
    if isinstance(condition, Not):
        return _collect(condition.item, segments, leaf, seen)
    if isinstance(condition, InSegment):
        if condition.key in seen or condition.key not in segments:
            return set()
        return _collect(segments[condition.key], segments, leaf, {*seen, condition.key})
    return leaf(condition)
