"""Automations as data: triggers, entry rules, exit conditions and a graph of nodes.

`parse_automation` validates a YAML/JSON definition and names the bad node: unknown node types
or targets, unreachable nodes, branches without a target, loops with no wait in them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from conveyor.domain.conditions import Condition, Parser, PropertyIs, parse_duration
from conveyor.domain.errors import InvalidInput

KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
END = "end"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEND_TYPES = {
    "send_email": "email",
    "send_sms": "sms",
    "send_site_message": "site_message",
    "notify_team": "team",
    "webhook": "webhook",
}
ACTION_TYPES = {
    "add_tag",
    "remove_tag",
    "set_field",
    "clear_field",
    "increment_field",
    "subscribe",
    "unsubscribe",
    "adjust_score",
}
FLOW_TYPES = {
    "wait",
    "wait_until",
    "if",
    "split",
    "goal",
    "end",
    "start_automation",
    "exit_automation",
}
NODE_TYPES = FLOW_TYPES | ACTION_TYPES | set(SEND_TYPES)
ON_CONFLICT = ("queue", "skip", "preempt")
PRIORITY_LEVELS = range(-1000, 1001)


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
        for key in ("then", "else", "on_timeout"):
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


def webhook_event(automation_key: str) -> str:
    """The event an automation's inbound webhook records (its trigger)."""
    return f"webhook.{automation_key}"


def _presets(raw: dict[str, Any], path: str, parser: Parser, key: str) -> Trigger:
    """Trigger presets of the catalog, each a documented shorthand over an event."""

    def one(name: str, **props: Any) -> Trigger:
        return Trigger(name, tuple(PropertyIs((k,), "eq", v) for k, v in props.items()))

    if len(raw) != 1 and "event" not in raw:
        raise InvalidInput(path, "a trigger is one preset, e.g. {list_subscribed: newsletter}")
    if "event" in raw:
        extra = set(raw) - {"event", "where"}
        if extra:
            raise InvalidInput(
                f"{path}.{sorted(extra)[0]}", "a custom event trigger has 'event' and 'where'"
            )
        where = parser._where(raw.get("where", []), f"{path}.where")
        if not isinstance(raw["event"], str) or not raw["event"]:
            raise InvalidInput(f"{path}.event", "names an event")
        return Trigger(raw["event"], where)
    kind, value = next(iter(raw.items()))
    here = f"{path}.{kind}"
    simple = {
        "list_subscribed": ("list.subscribed", "list"),
        "list_unsubscribed": ("list.unsubscribed", "list"),
        "tag_added": ("tag.added", "tag"),
        "tag_removed": ("tag.removed", "tag"),
        "segment_entered": ("segment.entered", "segment"),
        "segment_exited": ("segment.exited", "segment"),
        "goal_reached": ("automation.goal_reached", "automation"),
        "goal_skipped": ("automation.goal_skipped", "automation"),
        "automation_completed": ("automation.completed", "automation"),
    }
    if kind in simple:
        name, prop = simple[kind]
        if not isinstance(value, str) or not value:
            raise InvalidInput(here, f"names the {prop}")
        return one(name, **{prop: value})
    if kind in (
        "order_completed",
        "cart_updated",
        "form_submitted",
        "email_opened",
        "email_clicked",
        "email_replied",
        "sms_replied",
        "manual",
    ):
        name = {
            "email_opened": "email.opened",
            "email_clicked": "email.clicked",
            "email_replied": "email.replied",
            "sms_replied": "sms.replied",
            "manual": "automation.enroll_requested",
        }.get(kind, kind)
        if kind == "manual":
            return Trigger(name)
        filters = parser._where(value or [], here) if isinstance(value, list) else ()
        if isinstance(value, str) and kind == "email_clicked":
            filters = (PropertyIs(("url",), "eq", value),)
        elif isinstance(value, str) and kind == "form_submitted":
            filters = (PropertyIs(("form",), "eq", value),)
        return Trigger(name, tuple(filters))
    if kind == "date":
        return Trigger("date", date=_date_trigger(value, here, parser))
    if kind == "webhook":
        if value is not True:
            raise InvalidInput(
                here, "write 'webhook: true'; GET /automations/KEY/webhook has the URL"
            )
        return Trigger(webhook_event(key))
    if kind == "page_visited":
        if not isinstance(value, str) or not value:
            raise InvalidInput(here, "a URL pattern like 'https://shop.example/pricing*'")
        return Trigger("page", url_pattern=value)
    if kind == "field_changed":
        if (
            not isinstance(value, dict)
            or "field" not in value
            or set(value) - {"field", "from", "to"}
        ):
            raise InvalidInput(here, "{field: F, from?: V, to?: V}")
        props = {"field": value["field"]}
        for src, dst in (("from", "old"), ("to", "new")):
            if src in value:
                props[dst] = value[src]
        return one("field.changed", **props)
    if kind == "score_crossed":
        if not isinstance(value, dict) or not isinstance(value.get("threshold"), int | float):
            raise InvalidInput(here, "{threshold: N, direction: up|down}")
        t, up = value["threshold"], value.get("direction", "up") == "up"
        where = (
            (PropertyIs(("old",), "lt", t), PropertyIs(("new",), "gte", t))
            if up
            else (PropertyIs(("old",), "gte", t), PropertyIs(("new",), "lt", t))
        )
        return Trigger("score.changed", where)
    raise InvalidInput(here, f"unknown trigger '{kind}'")


def _date_trigger(value: Any, here: str, parser: Parser) -> DateTrigger:
    if not isinstance(value, dict) or set(value) - {"field", "yearly", "offset", "at"}:
        raise InvalidInput(here, "{field: birth_date, yearly: true, offset: -3 days, at: '09:00'}")
    name = value.get("field")
    definition = parser.fields.get(name) if isinstance(name, str) else None
    if definition is None or definition.type.value != "date":
        raise InvalidInput(f"{here}.field", f"'{name}' is not a declared date field")
    offset = str(value.get("offset", "0 days")).strip()
    sign = -1 if offset.startswith("-") else 1
    body = offset.lstrip("+-").strip()
    seconds = 0 if body in ("0", "0 days", "0d") else parse_duration(body, f"{here}.offset")
    if seconds % 86400:
        raise InvalidInput(f"{here}.offset", "a whole number of days, like -3 days")
    at = value.get("at", "00:00")
    if not isinstance(at, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", at):
        raise InvalidInput(f"{here}.at", "a time of day like 09:00")
    return DateTrigger(name, bool(value.get("yearly", False)), sign * seconds // 86400, at)


class AutomationParser:
    def __init__(self, parser: Parser, automations: set[str] | None = None) -> None:
        self.parser = parser
        self.automations = automations

    def parse(self, raw: Any) -> Automation:
        if not isinstance(raw, dict):
            raise InvalidInput("", "an automation is a mapping with key, triggers and nodes")
        allowed = {"key", "name", "triggers", "entry", "exit_when", "nodes", "start", "priority"}
        extra = sorted(set(raw) - allowed)
        if extra:
            raise InvalidInput(
                extra[0], f"unknown key; an automation has {', '.join(sorted(allowed))}"
            )
        key = raw.get("key")
        if not isinstance(key, str) or not KEY.match(key):
            raise InvalidInput("key", "1-64 of a-z, 0-9, - and _")
        triggers_raw = raw.get("triggers", [])
        if not isinstance(triggers_raw, list):
            raise InvalidInput("triggers", "a list of triggers")
        triggers = tuple(
            _presets(t if isinstance(t, dict) else {}, f"triggers.{i}", self.parser, key)
            for i, t in enumerate(triggers_raw)
        )
        entry = self._entry(raw.get("entry") or {})
        priority = _priority(raw["priority"]) if raw.get("priority") is not None else None
        exit_when = self._condition(raw["exit_when"], "exit_when") if raw.get("exit_when") else None
        nodes_raw = raw.get("nodes")
        if not isinstance(nodes_raw, list) or not nodes_raw:
            raise InvalidInput("nodes", "a non-empty list of nodes")
        ids = [n.get("id") if isinstance(n, dict) else None for n in nodes_raw]
        nodes: dict[str, Node] = {}
        for i, item in enumerate(nodes_raw):
            following = ids[i + 1] if i + 1 < len(ids) else None
            node = self._node(item, f"nodes.{i}", following)
            if node.id in nodes or node.id == END:
                raise InvalidInput(
                    f"nodes.{i}.id", f"node id '{node.id}' is used twice or reserved"
                )
            nodes[node.id] = node
        start = raw.get("start", nodes_raw[0].get("id"))
        if start not in nodes:
            raise InvalidInput("start", f"no node '{start}'")
        automation = Automation(
            key, str(raw.get("name") or key), triggers, entry, exit_when, nodes, start, priority
        )
        check_graph(automation, {id_: f"nodes.{i}" for i, id_ in enumerate(ids)})
        return automation

    def _condition(self, raw: Any, path: str) -> Condition:
        try:
            return self.parser.parse(raw)
        except InvalidInput as exc:
            raise exc.prefixed(path) from None

    def _entry(self, raw: Any) -> EntryRules:
        if not isinstance(raw, dict):
            raise InvalidInput("entry", "a mapping of entry rules")
        allowed = {"repeat", "after", "max_per_day", "if", "unless", "queue_behind"}
        extra = sorted(set(raw) - allowed)
        if extra:
            raise InvalidInput(f"entry.{extra[0]}", f"entry rules are {', '.join(sorted(allowed))}")
        repeat = raw.get("repeat", "once")
        if repeat not in ("once", "every_time", "after"):
            raise InvalidInput("entry.repeat", "once, every_time or after")
        after = parse_duration(raw["after"], "entry.after") if repeat == "after" else None
        if repeat == "after" and "after" not in raw:
            raise InvalidInput("entry.after", "repeat: after needs 'after: 30 days'")
        cap = raw.get("max_per_day")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
            raise InvalidInput("entry.max_per_day", "a whole number >= 1")
        queue = raw.get("queue_behind", [])
        if isinstance(queue, str):
            queue = [queue]
        if not isinstance(queue, list) or not all(isinstance(q, str) for q in queue):
            raise InvalidInput("entry.queue_behind", "a list of automation keys")
        for i, q in enumerate(queue):
            if self.automations is not None and q not in self.automations:
                raise InvalidInput(f"entry.queue_behind.{i}", f"no automation '{q}'")
        return EntryRules(
            repeat=repeat,
            after_seconds=after,
            max_per_day=cap,
            condition=self._condition(raw["if"], "entry.if") if raw.get("if") else None,
            unless=self._condition(raw["unless"], "entry.unless") if raw.get("unless") else None,
            queue_behind=tuple(queue),
        )

    def _node(self, raw: Any, path: str, following: str | None) -> Node:
        if not isinstance(raw, dict):
            raise InvalidInput(path, "a node is a mapping with id and type")
        node_id, kind = raw.get("id"), raw.get("type")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            raise InvalidInput(f"{path}.id", "1-64 of letters, digits, - and _")
        if kind not in NODE_TYPES:
            raise InvalidInput(
                f"{path}.type",
                f"unknown node type '{kind}'; use one of {', '.join(sorted(NODE_TYPES))}",
            )
        nxt = raw.get("next", following if kind not in ("end", "if", "split") else None)
        if nxt is not None and not isinstance(nxt, str):
            raise InvalidInput(f"{path}.next", "names a node")
        spec = _NODE_SPECS[kind]
        extra = sorted(set(raw) - {"id", "type", "next", "name"} - set(spec))
        if extra:
            raise InvalidInput(
                f"{path}.{extra[0]}",
                f"a {kind} node takes {', '.join(sorted(spec)) or 'nothing else'}",
            )
        config: dict[str, Any] = {"name": raw.get("name")} if raw.get("name") else {}
        condition = None
        for key, rule in spec.items():
            here = f"{path}.{key}"
            if key not in raw:
                if rule.endswith("!"):
                    raise InvalidInput(here, f"a {kind} node needs '{key}'")
                continue
            value = raw[key]
            rule = rule.rstrip("!")
            if rule == "condition":
                condition = self._condition(value, here)
            elif rule == "duration":
                config[key] = parse_duration(value, here)
            elif rule == "node":
                if not isinstance(value, str):
                    raise InvalidInput(here, "names a node")
                config[key] = value
            elif rule == "text":
                if not isinstance(value, str) or not value:
                    raise InvalidInput(here, "expects text")
                config[key] = value
            elif rule == "number":
                if not isinstance(value, int | float) or isinstance(value, bool):
                    raise InvalidInput(here, "expects a number")
                config[key] = value
            elif rule == "paths":
                config[key] = _paths(value, here)
            elif rule == "at":
                if not isinstance(value, str) or not re.fullmatch(
                    r"([01]\d|2[0-3]):[0-5]\d", value
                ):
                    raise InvalidInput(here, "a time of day like 09:00")
                config[key] = value
            elif rule == "weekdays":
                if (
                    not isinstance(value, list)
                    or not value
                    or any(d not in WEEKDAYS for d in value)
                ):
                    raise InvalidInput(here, f"a list of {', '.join(WEEKDAYS)}")
                config[key] = [WEEKDAYS.index(d) for d in value]
            elif rule == "choice":
                options = _CHOICES[(kind, key)]
                if value not in options:
                    raise InvalidInput(here, f"one of {', '.join(options)}")
                config[key] = value
            elif rule == "list":
                if (
                    not isinstance(value, list)
                    or not value
                    or not all(isinstance(v, str) and v for v in value)
                ):
                    raise InvalidInput(here, "a non-empty list of text")
                config[key] = value
            else:  # any JSON value
                config[key] = value
        _check_node(kind, config, condition, path)
        return Node(node_id, kind, None if nxt == END else nxt, config, condition)


def _priority(raw: Any) -> Priority:
    if not isinstance(raw, dict):
        raise InvalidInput("priority", "{group: promotions, level: 10, on_conflict: queue}")
    extra = sorted(set(raw) - {"group", "level", "on_conflict"})
    if extra:
        raise InvalidInput(f"priority.{extra[0]}", "priority takes group, level and on_conflict")
    group = raw.get("group")
    if not isinstance(group, str) or not KEY.match(group):
        raise InvalidInput("priority.group", "names the group: 1-64 of a-z, 0-9, - and _")
    level = raw.get("level", 0)
    if not isinstance(level, int) or isinstance(level, bool) or level not in PRIORITY_LEVELS:
        raise InvalidInput("priority.level", "a whole number from -1000 to 1000 (higher wins)")
    on_conflict = raw.get("on_conflict", "queue")
    if on_conflict not in ON_CONFLICT:
        raise InvalidInput("priority.on_conflict", f"one of {', '.join(ON_CONFLICT)}")
    return Priority(group, level, on_conflict)


def _paths(value: Any, path: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 2 <= len(value) <= 10:
        raise InvalidInput(path, "a split has 2 to 10 paths")
    out = []
    for i, p in enumerate(value):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("weight"), int | float)
            or p["weight"] <= 0
        ):
            raise InvalidInput(f"{path}.{i}.weight", "a positive weight")
        if not isinstance(p.get("next"), str):
            raise InvalidInput(f"{path}.{i}.next", "a path needs a target node")
        out.append(
            {"weight": p["weight"], "next": p["next"], "name": p.get("name") or f"path {i + 1}"}
        )
    return out


def _check_node(kind: str, config: dict[str, Any], condition: Condition | None, path: str) -> None:
    if kind == "wait" and "for" not in config:
        raise InvalidInput(f"{path}.for", "a wait node needs 'for: 1 day 6 hours'")
    if kind == "wait_until":
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
    if kind == "if":
        for key in ("then", "else"):
            if key not in config:
                raise InvalidInput(
                    f"{path}.{key}", "an if node needs both 'then' and 'else' targets"
                )
    if kind in ("set_field", "increment_field") and "value" not in config and "by" not in config:
        raise InvalidInput(f"{path}.value", f"a {kind} node needs a value")
    if kind == "notify_team" and len(config.get("to", [])) > 5:
        raise InvalidInput(f"{path}.to", "at most five addresses")


_COMMON_SEND = {
    "template": "text!",
    "class": "choice",
    "allow_repeat": "any",  # the same template to the same contact within repeat_within
    "on_cap": "choice",  # defer (default) or skip when a frequency cap holds it back
    "send_at": "at",  # at this local time of day (the contact's timezone)
    "list": "text",  # sent for this list: only its subscribers; unsubscribing leaves it
}
_NODE_SPECS: dict[str, dict[str, str]] = {
    "wait": {"for": "duration!"},
    "wait_until": {
        "condition": "condition",
        "timeout": "duration",
        "on_timeout": "node",
        "until": "any",
        "at": "at",
        "weekdays": "weekdays",
        "field": "text",
        "offset": "any",
    },
    "if": {"condition": "condition!", "then": "node", "else": "node"},
    "split": {"paths": "paths!"},
    "goal": {"condition": "condition!", "otherwise": "choice", "timeout": "duration"},
    "end": {},
    "start_automation": {"automation": "text!"},
    "exit_automation": {"automation": "text!"},
    "add_tag": {"tag": "text!"},
    "remove_tag": {"tag": "text!"},
    "set_field": {"field": "text!", "value": "any"},
    "clear_field": {"field": "text!"},
    "increment_field": {"field": "text!", "by": "number"},
    "subscribe": {"list": "text!"},
    "unsubscribe": {"list": "text!"},
    "adjust_score": {"by": "number!"},
    "send_email": dict(_COMMON_SEND),
    "send_sms": dict(_COMMON_SEND),
    "send_site_message": dict(_COMMON_SEND),
    "notify_team": {**_COMMON_SEND, "template": "text", "to": "list!"},  # built-in text if none
    "webhook": {**_COMMON_SEND, "template": "text", "url": "text!", "method": "text"},
}
_CHOICES = {("goal", "otherwise"): ("continue", "wait", "end")} | {
    (kind, "class"): ("marketing", "transactional") for kind in SEND_TYPES
} | {(kind, "on_cap"): ("defer", "skip") for kind in SEND_TYPES}

WAITING_TYPES = {"wait", "wait_until", "goal"}


def check_graph(automation: Automation, where: dict[str, str]) -> None:
    """Targets exist, every node is reachable, and every loop passes through a wait."""
    nodes = automation.nodes
    for node in nodes.values():
        for target in node.targets():
            if target not in nodes:
                raise InvalidInput(
                    f"{where[node.id]}", f"node '{node.id}' leads to unknown node '{target}'"
                )
    seen: set[str] = set()
    stack = [automation.start]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack += nodes[current].targets()
    for node_id in nodes:
        if node_id not in seen and nodes[node_id].type != "goal":
            raise InvalidInput(
                where[node_id], f"node '{node_id}' cannot be reached from '{automation.start}'"
            )
    # A cycle among non-waiting nodes would spin forever within one tick.
    colour: dict[str, int] = {}

    def visit(node_id: str) -> None:
        colour[node_id] = 1
        for target in nodes[node_id].targets():
            if nodes[target].type in WAITING_TYPES:
                continue
            if colour.get(target) == 1:
                raise InvalidInput(where[target], f"the loop through '{target}' has no wait in it")
            if target not in colour:
                visit(target)
        colour[node_id] = 2

    for node_id, node in nodes.items():
        if node.type not in WAITING_TYPES and node_id not in colour:
            visit(node_id)
