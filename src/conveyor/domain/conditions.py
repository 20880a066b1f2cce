"""The condition language: one tree of `all` / `any` / `not` groups over predicates, used by
segments, if/else branches, waits, goals and entry filters.

`parse_condition` turns JSON/YAML data into frozen dataclasses, checking every node against the
workspace's fields and naming the bad node by its path (e.g. `all.1.where.0.op`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from conveyor.domain.contacts import SubscriptionStatus
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import FieldDefinition, FieldType, parse_datetime

# --- the tree --------------------------------------------------------------------------------


@dataclass(frozen=True)
class All:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class FieldIs:
    """A contact attribute compared with an operator suited to its type."""

    field: str
    type: FieldType
    op: str
    value: Any = None
    standard: bool = False  # a column of the contact, not a custom field


@dataclass(frozen=True)
class HasTags:
    mode: str  # "any" or "all"
    tags: tuple[str, ...]


@dataclass(frozen=True)
class InList:
    list: str
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class PropertyIs:
    """A filter on an event's properties: a dotted path, an operator, a value."""

    path: tuple[str, ...]
    op: str
    value: Any = None


@dataclass(frozen=True)
class Window:
    """Which events count: the last `seconds`, a fixed range, or since entering the automation."""

    seconds: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    since_entry: bool = False

    def bounds(
        self, now: datetime, entered_at: datetime | None = None
    ) -> tuple[datetime | None, datetime | None]:
        if self.since_entry:
            if entered_at is None:
                raise InvalidInput("within", "'since_entry' only works inside an automation")
            return entered_at, None
        if self.seconds is not None:
            return now - timedelta(seconds=self.seconds), None
        return self.start, self.end


@dataclass(frozen=True)
class Performed:
    """Performed event `name` (with property filters) a number of times in a window; or an
    aggregate of a numeric property; or first/last performed more or less than D ago."""

    name: str
    where: tuple[PropertyIs, ...] = ()
    window: Window | None = None
    count_op: str = "gte"
    count: int = 1
    aggregate: str | None = None  # sum, avg, min, max
    property: tuple[str, ...] = ()
    op: str | None = None  # for aggregates
    value: float | None = None
    first_last: str | None = None  # "first" or "last"
    recency_op: str | None = None  # "within_last" or "more_than_ago"
    recency_seconds: int | None = None


@dataclass(frozen=True)
class InAutomation:
    """Automation membership: inside it now, or entered, completed, reached a goal (a named one
    or any), exited, or finished it (any way out) — in a window when one is given."""

    automation: str  # the automation's key
    status: str = "active"
    goal: str | None = None  # a goal node's id, with status goal_reached
    window: Window | None = None


@dataclass(frozen=True)
class InSegment:
    key: str


@dataclass(frozen=True)
class HasDeal:
    """Is the main contact of a deal in this pipeline, stage and status (each optional), worth
    `value_op value_minor` (minor units, so SQL and the evaluator compare integers)."""

    pipeline: str | None = None
    stage: str | None = None
    status: str | None = None
    value_op: str | None = None
    value_minor: int | None = None


DEAL_STATUSES = ("open", "won", "lost")
DEAL_OPS = ("eq", "ne", "gt", "gte", "lt", "lte")
# Every change to a deal records one of these for its contact: what a deal condition waits on.
DEAL_EVENTS = (
    "deal.created",
    "deal.updated",
    "deal.stage_changed",
    "deal.won",
    "deal.lost",
    "deal.reopened",
    "deal.deleted",
)


@dataclass(frozen=True)
class ScoreIs:
    """A named score of the scoring model (its value now, decayed) compared with a number."""

    score: str
    op: str  # eq ne gt gte lt lte between
    value: Any = None


@dataclass(frozen=True)
class Never:
    """Matches no one: what a saved condition becomes when a field or list it used is gone."""

    reason: str


Condition = (
    All
    | AnyOf
    | Not
    | FieldIs
    | HasTags
    | InList
    | Performed
    | InAutomation
    | InSegment
    | HasDeal
    | ScoreIs
    | Never
)

# --- vocabulary --------------------------------------------------------------------------

TEXT_OPS = {
    "eq",
    "ne",
    "in",
    "not_in",
    "contains",
    "not_contains",
    "starts_with",
    "ends_with",
    "is_set",
    "is_empty",
}
NUMBER_OPS = {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in", "is_set", "is_empty"}
BOOLEAN_OPS = {"eq", "ne", "is_set", "is_empty"}
DATE_OPS = {
    "eq",
    "before",
    "after",
    "between",
    "within_last",
    "more_than_ago",
    "within_next",
    "today",
    "this_month",
    "anniversary",
    "is_set",
    "is_empty",
}
MULTI_OPS = {"contains", "not_contains", "contains_any", "contains_all", "is_set", "is_empty"}
OPS_BY_TYPE = {
    FieldType.TEXT: TEXT_OPS,
    FieldType.CHOICE: TEXT_OPS,
    FieldType.NUMBER: NUMBER_OPS,
    FieldType.BOOLEAN: BOOLEAN_OPS,
    FieldType.DATE: DATE_OPS,
    FieldType.DATETIME: DATE_OPS - {"anniversary"},
    FieldType.MULTI_CHOICE: MULTI_OPS,
}
PROPERTY_OPS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "contains", "exists"}
COUNT_OPS = {"gte", "lte", "eq"}
AGGREGATES = {"sum", "avg", "min", "max"}
COMPARE_OPS = {"eq", "ne", "gt", "gte", "lt", "lte"}
SCORE_OPS = COMPARE_OPS | {"between"}

# Standard attributes and their types; `email_domain` is derived from the email.
STANDARD_TYPES: dict[str, FieldType] = {
    "email": FieldType.TEXT,
    "email_domain": FieldType.TEXT,
    "phone": FieldType.TEXT,
    "first_name": FieldType.TEXT,
    "last_name": FieldType.TEXT,
    "external_id": FieldType.TEXT,
    "timezone": FieldType.TEXT,
    "locale": FieldType.TEXT,
    "score": FieldType.NUMBER,
    "created_at": FieldType.DATETIME,
    "updated_at": FieldType.DATETIME,
}
MESSAGE_EVENTS = {"received": "email.sent", "opened": "email.opened", "clicked": "email.clicked"}
# Automation membership. `active` (inside now: a run active or queued) is state, so it is read
# from the runs. The other statuses are history, so they are read from the system events the
# engine writes in the same transaction as each run's entry, goals and end: those carry the
# goal's id and the times windows need, and they survive a merge (merging moves the events to
# the kept contact but deletes the other's runs). `completed` means the run went through to its
# end (outcome completed, or ended at a final goal); an unmet goal's `otherwise: end`, an `end`
# node or another automation's `exit_automation` only make it `finished`.
AUTOMATION_STATUSES = ("active", "entered", "completed", "goal_reached", "exited", "finished")
AUTOMATION_EVENTS: dict[str, tuple[str, ...]] = {
    "entered": ("automation.entered",),
    "completed": ("automation.completed",),
    "goal_reached": ("automation.goal_reached",),
    "exited": ("automation.exited",),
    "finished": ("automation.completed", "automation.exited"),
}
# Events that change a contact's membership of an automation, whatever the status asked about.
AUTOMATION_CHANGES = frozenset(
    ("automation.entered", "automation.goal_reached", "automation.completed", "automation.exited")
)
COMPLETED_OUTCOMES = ("completed", "goal_reached")
_DURATION_PART = re.compile(
    r"(\d+)\s*(weeks?|w|days?|d|hours?|h|minutes?|min|m|seconds?|s)\b", re.I
)
_UNIT_SECONDS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(raw: Any, where: str) -> int:
    """Seconds from "90 days", "1 day 6 hours", "36h" or {"days": 1, "hours": 6}."""
    if isinstance(raw, dict):
        units = {"weeks": 604800, "days": 86400, "hours": 3600, "minutes": 60, "seconds": 1}
        unknown = set(raw) - set(units)
        if unknown or not raw:
            raise InvalidInput(where, f"a duration has {', '.join(units)}")
        total = 0
        for unit, amount in raw.items():
            if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise InvalidInput(where, f"{unit} must be a whole number >= 0")
            total += units[unit] * amount
    elif isinstance(raw, str):
        text = raw.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or _DURATION_PART.sub("", text).replace(",", "").replace("and", "").strip():
            raise InvalidInput(
                where, f"'{raw[:40]}' is not a duration like '90 days' or '1 day 6 hours'"
            )
        total = sum(int(n) * _UNIT_SECONDS[unit[0].lower()] for n, unit in parts)
    else:
        raise InvalidInput(
            where, "a duration is text like '7 days' or an object like {\"days\": 7}"
        )
    if total <= 0 or total > 100 * 365 * 86400:
        raise InvalidInput(where, "a duration is between 1 second and 100 years")
    return total


# --- parsing ---------------------------------------------------------------------------------

MAX_DEPTH = 32  # levels of all/any/not


class Parser:
    """Parses conditions for one workspace: its custom fields, lists and segments."""

    def __init__(
        self,
        fields: dict[str, FieldDefinition],
        lists: set[str] | None = None,
        segments: set[str] | None = None,
        automations: set[str] | None = None,
        scores: set[str] | None = None,
    ) -> None:
        self.fields = fields
        self.lists = lists
        self.segments = segments
        self.automations = automations
        self.scores = scores  # the scoring model's score names (None: not checked)

    def parse(self, raw: Any, path: str = "", depth: int = 1) -> Condition:
        if not isinstance(raw, dict) or not raw:
            raise InvalidInput(path, 'a condition is an object such as {"all": [...]}')
        if depth > MAX_DEPTH:
            # Compiling to SQL and evaluating recurse once per level: ~300 levels exhausted the
            # interpreter's stack (a 500). People nest three or four.
            raise InvalidInput(path, f"conditions nest at most {MAX_DEPTH} levels of all/any/not")
        for group in ("all", "any"):
            if group in raw:
                self._only(raw, {group}, path)
                items = raw[group]
                where = _join(path, group)
                if not isinstance(items, list) or not items:
                    raise InvalidInput(where, f"'{group}' takes a non-empty list of conditions")
                parsed = tuple(
                    self.parse(item, _join(where, str(i)), depth + 1)
                    for i, item in enumerate(items)
                )
                return All(parsed) if group == "all" else AnyOf(parsed)
        if "not" in raw:
            self._only(raw, {"not"}, path)
            return Not(self.parse(raw["not"], _join(path, "not"), depth + 1))
        if "field" in raw:
            return self._field(raw, path)
        if "tag" in raw or "tags_any" in raw or "tags_all" in raw:
            return self._tags(raw, path)
        if "list" in raw:
            return self._list(raw, path)
        if "event" in raw:
            return self._event(raw, path)
        if "message" in raw:
            return self._message(raw, path)
        if "automation" in raw:
            return self._automation(raw, path)
        if "deal" in raw:
            return self._deal(raw, path)
        if "score" in raw:
            return self._score(raw, path)
        if "segment" in raw:
            self._only(raw, {"segment"}, path)
            key = raw["segment"]
            if not isinstance(key, str) or (self.segments is not None and key not in self.segments):
                raise InvalidInput(_join(path, "segment"), f"no segment '{key}' in this workspace")
            return InSegment(key)
        known = (
            "all, any, not, field, tag, tags_any, tags_all, list, event, message, automation, "
            "deal, segment, score"
        )
        raise InvalidInput(path, f"unknown condition {sorted(raw)}; use one of {known}")

    @staticmethod
    def _only(raw: dict[str, Any], allowed: set[str], path: str) -> None:
        extra = sorted(set(raw) - allowed)
        if extra:
            raise InvalidInput(_join(path, extra[0]), f"'{extra[0]}' does not belong here")

    # fields ---------------------------------------------------------------------------

    def _field(self, raw: dict[str, Any], path: str) -> FieldIs:
        self._only(raw, {"field", "op", "value"}, path)
        name = raw["field"]
        where = _join(path, "field")
        if not isinstance(name, str):
            raise InvalidInput(where, "names a contact field")
        if name in STANDARD_TYPES:
            ftype, standard = STANDARD_TYPES[name], True
        elif name in self.fields:
            ftype, standard = self.fields[name].type, False
        else:
            raise InvalidInput(
                where, f"no field '{name}'; declare it or use one of {', '.join(STANDARD_TYPES)}"
            )
        op = raw.get("op", "eq")
        allowed = OPS_BY_TYPE[ftype]
        if op not in allowed:
            raise InvalidInput(
                _join(path, "op"),
                f"'{op}' does not apply to a {ftype} field; "
                f"use one of {', '.join(sorted(allowed))}",
            )
        value = self._field_value(ftype, op, raw.get("value"), "value" in raw, _join(path, "value"))
        return FieldIs(name, ftype, op, value, standard)

    def _field_value(self, ftype: FieldType, op: str, value: Any, given: bool, where: str) -> Any:
        if op in ("is_set", "is_empty", "today", "this_month"):
            if given and value is not None:
                raise InvalidInput(where, f"'{op}' takes no value")
            return None
        if not given:
            raise InvalidInput(where, f"'{op}' needs a value")
        if op in ("within_last", "more_than_ago", "within_next"):
            return parse_duration(value, where)
        if op == "anniversary":
            if value is None:
                return 0
            if not isinstance(value, int) or isinstance(value, bool) or not -366 <= value <= 366:
                raise InvalidInput(
                    where, "'anniversary' takes a number of days from today (0 = today)"
                )
            return value
        if op in ("in", "not_in", "contains_any", "contains_all"):
            if not isinstance(value, list) or not value:
                raise InvalidInput(where, f"'{op}' takes a non-empty list")
            return tuple(self._scalar(ftype, v, f"{where}.{i}") for i, v in enumerate(value))
        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidInput(where, "'between' takes [low, high]")
            low, high = (self._scalar(ftype, v, f"{where}.{i}") for i, v in enumerate(value))
            if low > high:
                raise InvalidInput(where, "'between' needs low <= high")
            return (low, high)
        scalar = self._scalar(ftype, value, where)
        if op in ("contains", "not_contains", "starts_with", "ends_with") and scalar == "":
            raise InvalidInput(where, f"'{op}' needs non-empty text")
        return scalar

    @staticmethod
    def _scalar(ftype: FieldType, value: Any, where: str) -> Any:
        if ftype in (FieldType.TEXT, FieldType.CHOICE, FieldType.MULTI_CHOICE):
            if not isinstance(value, str):
                raise InvalidInput(where, "expects text")
            return value
        if ftype is FieldType.NUMBER:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise InvalidInput(where, "expects a number")
            return value
        if ftype is FieldType.BOOLEAN:
            if not isinstance(value, bool):
                raise InvalidInput(where, "expects true or false")
            return value
        if ftype is FieldType.DATE:
            try:
                return date.fromisoformat(str(value)).isoformat()
            except ValueError:
                raise InvalidInput(where, "expects a date like 2026-05-17") from None
        moment = parse_datetime(value)
        if moment is None:
            raise InvalidInput(where, "expects a date-time like 2026-05-17T09:00:00Z")
        return moment.replace(microsecond=0)  # stored date-time fields are to the second

    def _score(self, raw: dict[str, Any], path: str) -> FieldIs | ScoreIs:
        """`{score: NAME, op, value}`: a named score of the scoring model; `score: score` is
        the contact's own score field."""
        self._only(raw, {"score", "op", "value"}, path)
        name = raw["score"]
        if name == "score":
            rest = {k: v for k, v in raw.items() if k != "score"}
            return self._field({"field": "score", **rest}, path)
        if not isinstance(name, str) or (self.scores is not None and name not in self.scores):
            known = ", ".join(sorted(self.scores or ())) or "none yet: apply a scoring model"
            raise InvalidInput(
                _join(path, "score"), f"no score '{name}' in the scoring model ({known})"
            )
        op = raw.get("op", "gte")
        if op not in SCORE_OPS:
            raise InvalidInput(_join(path, "op"), f"one of {', '.join(sorted(SCORE_OPS))}")
        value = raw.get("value")

        def number(v: Any, where: str) -> float:
            if not isinstance(v, int | float) or isinstance(v, bool) or v != v or abs(v) > 1e15:
                raise InvalidInput(where, "expects a number")
            return float(v)

        if op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidInput(_join(path, "value"), "'between' takes [low, high]")
            low, high = (number(v, _join(path, f"value.{i}")) for i, v in enumerate(value))
            if low > high:
                raise InvalidInput(_join(path, "value"), "'between' needs low <= high")
            return ScoreIs(name, op, (low, high))
        return ScoreIs(name, op, number(value, _join(path, "value")))

    # tags and lists ---------------------------------------------------------------------

    def _tags(self, raw: dict[str, Any], path: str) -> HasTags:
        key = next(k for k in ("tag", "tags_any", "tags_all") if k in raw)
        self._only(raw, {key}, path)
        value = raw[key]
        where = _join(path, key)
        tags = [value] if key == "tag" else value
        if (
            not isinstance(tags, list)
            or not tags
            or not all(isinstance(t, str) and t for t in tags)
        ):
            raise InvalidInput(
                where, "names a tag" if key == "tag" else "takes a non-empty list of tags"
            )
        return HasTags("all" if key == "tags_all" else "any", tuple(tags))

    def _list(self, raw: dict[str, Any], path: str) -> InList:
        self._only(raw, {"list", "status"}, path)
        key = raw["list"]
        if not isinstance(key, str) or (self.lists is not None and key not in self.lists):
            raise InvalidInput(_join(path, "list"), f"no list '{key}' in this workspace")
        status = raw.get("status", "subscribed")
        statuses = status if isinstance(status, list) else [status]
        allowed = {s.value for s in SubscriptionStatus}
        for i, s in enumerate(statuses):
            if s not in allowed:
                where = _join(path, "status") + (f".{i}" if isinstance(status, list) else "")
                raise InvalidInput(where, f"'{s}' is not one of {', '.join(sorted(allowed))}")
        if not statuses:
            raise InvalidInput(_join(path, "status"), "takes at least one status")
        return InList(key, tuple(statuses))

    # behaviour ----------------------------------------------------------------------------

    def _event(self, raw: dict[str, Any], path: str) -> Performed:
        self._only(
            raw,
            {
                "event",
                "where",
                "within",
                "count",
                "aggregate",
                "property",
                "op",
                "value",
                "first",
                "last",
            },
            path,
        )
        name = raw["event"]
        if not isinstance(name, str) or not name or len(name) > 200:
            raise InvalidInput(_join(path, "event"), "names an event")
        where = self._where(raw.get("where", []), _join(path, "where"))
        window = self._window(raw["within"], _join(path, "within")) if "within" in raw else None
        if "aggregate" in raw:
            return self._aggregate(raw, path, name, where, window)
        if "first" in raw or "last" in raw:
            which = "first" if "first" in raw else "last"
            if "count" in raw or ("first" in raw and "last" in raw):
                raise InvalidInput(
                    _join(path, which), f"'{which}' does not combine with count or the other"
                )
            spec = raw[which]
            here = _join(path, which)
            if (
                not isinstance(spec, dict)
                or len(spec) != 1
                or next(iter(spec)) not in ("within_last", "more_than_ago")
            ):
                raise InvalidInput(here, 'takes {"within_last": D} or {"more_than_ago": D}')
            op, duration = next(iter(spec.items()))
            return Performed(
                name,
                where,
                window,
                first_last=which,
                recency_op=op,
                recency_seconds=parse_duration(duration, f"{here}.{op}"),
            )
        for key in ("property", "op", "value"):
            if key in raw:
                raise InvalidInput(_join(path, key), f"'{key}' goes with 'aggregate'")
        count_op, count = "gte", 1
        if "count" in raw:
            spec = raw["count"]
            here = _join(path, "count")
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in COUNT_OPS:
                raise InvalidInput(here, 'takes {"gte": N}, {"lte": N} or {"eq": N}')
            count_op, count = next(iter(spec.items()))
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise InvalidInput(f"{here}.{count_op}", "a count is a whole number >= 0")
        return Performed(name, where, window, count_op=count_op, count=count)

    def _aggregate(
        self,
        raw: dict[str, Any],
        path: str,
        name: str,
        where: tuple[PropertyIs, ...],
        window: Window | None,
    ) -> Performed:
        fn = raw["aggregate"]
        if fn not in AGGREGATES:
            raise InvalidInput(_join(path, "aggregate"), f"one of {', '.join(sorted(AGGREGATES))}")
        prop = raw.get("property")
        if not isinstance(prop, str) or not prop:
            raise InvalidInput(_join(path, "property"), "names the numeric property to aggregate")
        op = raw.get("op", "gte")
        if op not in COMPARE_OPS:
            raise InvalidInput(_join(path, "op"), f"one of {', '.join(sorted(COMPARE_OPS))}")
        value = raw.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise InvalidInput(_join(path, "value"), "expects a number")
        return Performed(
            name,
            where,
            window,
            aggregate=fn,
            property=_path(prop, _join(path, "property")),
            op=op,
            value=value,
        )

    def _message(self, raw: dict[str, Any], path: str) -> Performed:
        """Sugar for message engagement: received/opened/clicked a message (or any) in a window."""
        self._only(raw, {"message", "template", "within", "count"}, path)
        what = raw["message"]
        if what not in MESSAGE_EVENTS:
            raise InvalidInput(_join(path, "message"), f"one of {', '.join(MESSAGE_EVENTS)}")
        event: dict[str, Any] = {"event": MESSAGE_EVENTS[what]}
        if "template" in raw:
            event["where"] = [{"property": "template", "op": "eq", "value": raw["template"]}]
        for key in ("within", "count"):
            if key in raw:
                event[key] = raw[key]
        return self._event(event, path)

    def _automation(self, raw: dict[str, Any], path: str) -> InAutomation:
        self._only(raw, {"automation", "status", "goal", "within"}, path)
        key = raw["automation"]
        where = _join(path, "automation")
        if not isinstance(key, str) or not key:
            raise InvalidInput(where, "names an automation by its key")
        if self.automations is not None and key not in self.automations:
            raise InvalidInput(where, f"no automation '{key}' in this workspace")
        # A goal alone means "reached that goal"; status defaults to "inside now".
        status = raw.get("status", "goal_reached" if "goal" in raw else "active")
        if status not in AUTOMATION_STATUSES:
            raise InvalidInput(
                _join(path, "status"),
                f"'{status}' is not one of {', '.join(AUTOMATION_STATUSES)}",
            )
        goal = raw.get("goal")
        if "goal" in raw:
            if status != "goal_reached":
                raise InvalidInput(_join(path, "goal"), "'goal' goes with status goal_reached")
            if not isinstance(goal, str) or not goal:
                raise InvalidInput(_join(path, "goal"), "names a goal node by its id")
        window = self._window(raw["within"], _join(path, "within")) if "within" in raw else None
        return InAutomation(key, status, goal, window)

    def _deal(self, raw: dict[str, Any], path: str) -> HasDeal:
        """{deal: {pipeline?, stage?, status?, value?: {op, value}}}: {deal: {}} is any deal."""
        self._only(raw, {"deal"}, path)
        spec, where = raw["deal"], _join(path, "deal")
        if not isinstance(spec, dict):
            raise InvalidInput(where, "{pipeline?, stage?, status?, value?: {op, value}}")
        self._only(spec, {"pipeline", "stage", "status", "value"}, where)
        for key in ("pipeline", "stage"):
            if key in spec and (not isinstance(spec[key], str) or not spec[key]):
                raise InvalidInput(_join(where, key), f"names a {key}")
        status = spec.get("status")
        if status is not None and status not in DEAL_STATUSES:
            raise InvalidInput(_join(where, "status"), f"one of {', '.join(DEAL_STATUSES)}")
        op = minor = None
        if "value" in spec:
            here = _join(where, "value")
            value = spec["value"]
            if not isinstance(value, dict) or set(value) != {"op", "value"}:
                raise InvalidInput(here, "{op: gte, value: 1000}")
            op, amount = value["op"], value["value"]
            if op not in DEAL_OPS:
                raise InvalidInput(_join(here, "op"), f"one of {', '.join(DEAL_OPS)}")
            if (
                not isinstance(amount, int | float)
                or isinstance(amount, bool)
                or not 0 <= amount < 10**13
            ):
                raise InvalidInput(_join(here, "value"), "a deal value: a number from 0")
            minor = round(amount * 100)
        return HasDeal(spec.get("pipeline"), spec.get("stage"), status, op, minor)

    def _where(self, raw: Any, path: str) -> tuple[PropertyIs, ...]:
        if not isinstance(raw, list):
            raise InvalidInput(path, "takes a list of property filters")
        filters = []
        for i, item in enumerate(raw):
            here = f"{path}.{i}"
            if not isinstance(item, dict) or "property" not in item:
                raise InvalidInput(here, 'a filter is {"property": P, "op": OP, "value": V}')
            self._only(item, {"property", "op", "value"}, here)
            op = item.get("op", "eq")
            if op not in PROPERTY_OPS:
                raise InvalidInput(f"{here}.op", f"one of {', '.join(sorted(PROPERTY_OPS))}")
            value = item.get("value")
            if op == "exists":
                value = None
            elif op in ("gt", "gte", "lt", "lte"):
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InvalidInput(f"{here}.value", f"'{op}' compares numbers")
            elif op == "contains":
                if not isinstance(value, str) or not value:
                    raise InvalidInput(f"{here}.value", "'contains' takes non-empty text")
            elif op == "in":
                if (
                    not isinstance(value, list)
                    or not value
                    or not all(_is_scalar(v) for v in value)
                ):
                    raise InvalidInput(
                        f"{here}.value", "'in' takes a list of numbers, text or booleans"
                    )
                value = tuple(value)
            elif not _is_scalar(value):
                raise InvalidInput(f"{here}.value", "compares with a number, text or boolean")
            filters.append(PropertyIs(_path(item["property"], f"{here}.property"), op, value))
        return tuple(filters)

    @staticmethod
    def _window(raw: Any, path: str) -> Window:
        if raw == "since_entry":
            return Window(since_entry=True)
        if isinstance(raw, dict) and ("from" in raw or "to" in raw):
            extra = set(raw) - {"from", "to"}
            if extra:
                raise InvalidInput(f"{path}.{sorted(extra)[0]}", "a range has 'from' and 'to'")
            bounds = []
            for key in ("from", "to"):
                value = raw.get(key)
                moment = parse_datetime(value) if value is not None else None
                if value is not None and moment is None:
                    raise InvalidInput(
                        f"{path}.{key}", "expects a date-time like 2026-05-17T00:00:00Z"
                    )
                bounds.append(moment)
            if bounds[0] and bounds[1] and bounds[0] > bounds[1]:
                raise InvalidInput(path, "'from' is after 'to'")
            return Window(start=bounds[0], end=bounds[1])
        return Window(seconds=parse_duration(raw, path))


def parse_condition(
    raw: Any,
    fields: dict[str, FieldDefinition],
    lists: set[str] | None = None,
    segments: set[str] | None = None,
    automations: set[str] | None = None,
    scores: set[str] | None = None,
) -> Condition:
    return Parser(fields, lists, segments, automations, scores).parse(raw)


def segment_refs(condition: Condition) -> set[str]:
    """The segments a condition refers to, directly."""
    if isinstance(condition, All | AnyOf):
        return set().union(*(segment_refs(c) for c in condition.items))
    if isinstance(condition, Not):
        return segment_refs(condition.item)
    if isinstance(condition, InSegment):
        return {condition.key}
    return set()


def find_cycle(graph: dict[str, set[str]], start: str | None = None) -> list[str] | None:
    """A cycle of segment references (as a path a → b → a, from `start` if it is on one)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in ([start] if start in graph else []) + sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _path(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, str) or not raw or len(raw) > 200:
        raise InvalidInput(where, "a property path like 'items' or 'cart.total'")
    parts = tuple(raw.split("."))
    if any(not p or not re.fullmatch(r"[A-Za-z0-9_\-]+", p) for p in parts):
        raise InvalidInput(where, f"'{raw}' is not a property path like 'cart.total'")
    return parts


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and value is not None
