"""Reading an automation definition (YAML/JSON as data): every error names the bad field.

Unknown node types or targets, unreachable nodes, branches without a target and loops with no
wait in them are refused (the graph checks are in `graph`).
"""

from __future__ import annotations

import re
from typing import Any

from conveyor.domain.automations.graph import check_graph
from conveyor.domain.automations.model import (
    END,
    KEY,
    NODE_ID,
    ON_CONFLICT,
    PRIORITY_LEVELS,
    Automation,
    DateTrigger,
    EntryRules,
    Node,
    Priority,
    Trigger,
    webhook_event,
)
from conveyor.domain.automations.nodes import REGISTRY
from conveyor.domain.conditions import Condition, Parser, PropertyIs, parse_duration
from conveyor.domain.errors import InvalidInput

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# Presets naming one thing (`list_subscribed: newsletter`): the event and its property.
SIMPLE_TRIGGERS = {
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
# Presets over an event, with optional filters (`order_completed: [{property: total, ...}]`).
EVENT_TRIGGERS = (
    "order_completed",
    "cart_updated",
    "form_submitted",
    "email_opened",
    "email_clicked",
    "email_replied",
    "sms_replied",
    "manual",
)


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
    if kind in SIMPLE_TRIGGERS:
        name, prop = SIMPLE_TRIGGERS[kind]
        if not isinstance(value, str) or not value:
            raise InvalidInput(here, f"names the {prop}")
        return one(name, **{prop: value})
    if kind in EVENT_TRIGGERS:
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
    if kind in CRM_TRIGGERS:
        return _crm_trigger(kind, value, here)
    if kind == "score_crossed":
        if (
            not isinstance(value, dict)
            or set(value) - {"threshold", "direction", "score"}
            or not isinstance(value.get("threshold"), int | float)
            or isinstance(value.get("threshold"), bool)
        ):
            raise InvalidInput(here, "{threshold: N, direction: up|down, score?: NAME}")
        direction = value.get("direction", "up")
        if direction not in ("up", "down"):
            raise InvalidInput(f"{here}.direction", "up or down")
        score = value.get("score", "score")  # the contact's own score unless a named one
        if not isinstance(score, str) or not score:
            raise InvalidInput(f"{here}.score", "names a score of the scoring model")
        t, up = value["threshold"], direction == "up"
        where = (
            (PropertyIs(("old",), "lt", t), PropertyIs(("new",), "gte", t))
            if up
            else (PropertyIs(("old",), "gte", t), PropertyIs(("new",), "lt", t))
        )
        return Trigger("score.changed", (PropertyIs(("score",), "eq", score), *where))
    raise InvalidInput(here, f"unknown trigger '{kind}'")


CRM_TRIGGERS = {
    "deal_created": ("deal.created", ("pipeline", "stage")),
    "deal_stage_changed": ("deal.stage_changed", ("pipeline", "from", "to")),
    "deal_won": ("deal.won", ("pipeline",)),
    "deal_lost": ("deal.lost", ("pipeline",)),
    "task_overdue": ("task.overdue", ("type",)),
}


def _crm_trigger(kind: str, value: Any, here: str) -> Trigger:
    """`deal_won: sales` (a pipeline), `deal_stage_changed: {pipeline: sales, to: Qualified}`,
    `task_overdue: {type: call}`, or `deal_created: {}` for any."""
    name, allowed = CRM_TRIGGERS[kind]
    if isinstance(value, str) and value and allowed[0] == "pipeline":
        value = {"pipeline": value}
    if value is None or value is True:
        value = {}
    if not isinstance(value, dict):
        raise InvalidInput(here, f"{{{', '.join(f'{a}?: …' for a in allowed)}}}")
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise InvalidInput(f"{here}.{extra[0]}", f"this trigger takes {', '.join(allowed)}")
    for key, given in value.items():
        if not isinstance(given, str) or not given:
            raise InvalidInput(f"{here}.{key}", "names it")
    return Trigger(name, tuple(PropertyIs((k,), "eq", v) for k, v in value.items()))


def trigger_preset(raw: dict[str, Any], path: str, parser: Parser) -> Trigger:
    """An event and its filters written as a trigger (scoring rules use the same presets)."""
    return _presets(raw, path, parser, "")


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
        node_type = REGISTRY.get(kind) if isinstance(kind, str) else None
        if node_type is None:
            raise InvalidInput(
                f"{path}.type",
                f"unknown node type '{kind}'; use one of {', '.join(sorted(REGISTRY))}",
            )
        nxt = raw.get("next", following if node_type.follows else None)
        if nxt is not None and not isinstance(nxt, str):
            raise InvalidInput(f"{path}.next", "names a node")
        spec = node_type.fields
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
                options = node_type.choices[key]
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
        if node_type.check is not None:
            node_type.check(config, condition, path)
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
