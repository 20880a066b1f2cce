"""The JSON Schema of a whole automation, built from the node registry and the parser's presets.

Published at `/schemas/automation.json` and as `schemas/automation.schema.json`; the panel's
builder draws its palette and every node's form from it. `x-category` and `x-follows` are
annotations for the builder (validators ignore them): a node's group in the palette, and whether
it leads on to the node below it when it names no `next`.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain.automations.model import ON_CONFLICT, PRIORITY_LEVELS
from conveyor.domain.automations.nodes import REGISTRY, NodeType
from conveyor.domain.automations.parse import (
    CRM_TRIGGERS,
    EVENT_TRIGGERS,
    SIMPLE_TRIGGERS,
    WEEKDAYS,
)
from conveyor.domain.condition_schema import condition_schema

SCHEMA_ID = "https://conveyor.invalid/schemas/automation.json"
TIME_OF_DAY = r"^([01]\d|2[0-3]):[0-5]\d$"
TEXT = {"type": "string", "minLength": 1}
CATEGORIES = {"flow": "Flow", "action": "Actions", "send": "Messages"}


def _rule(node_type: NodeType, key: str, rule: str) -> dict[str, Any]:
    """One field of a node, from its parser rule (see `NodeType.fields`)."""
    rule = rule.rstrip("!")
    if rule == "duration":
        return {"$ref": "#/$defs/duration"}
    if rule == "condition":
        return {"$ref": "#/$defs/condition"}
    if rule == "node":
        return {"$ref": "#/$defs/node_ref"}
    if rule == "text":
        return dict(TEXT)
    if rule == "number":
        return {"type": "number"}
    if rule == "at":
        return {"type": "string", "pattern": TIME_OF_DAY, "description": "a time like 09:00"}
    if rule == "weekdays":
        return {"type": "array", "minItems": 1, "items": {"enum": list(WEEKDAYS)}}
    if rule == "choice":
        return {"enum": list(node_type.choices[key])}
    if rule == "list":
        return {"type": "array", "minItems": 1, "items": dict(TEXT)}
    if rule == "paths":
        return {
            "type": "array",
            "minItems": 2,
            "maxItems": 10,
            "items": {
                "type": "object",
                "required": ["weight", "next"],
                "additionalProperties": False,
                "properties": {
                    "weight": {"type": "number", "exclusiveMinimum": 0},
                    "next": {"$ref": "#/$defs/node_ref"},
                    "name": {"type": "string"},
                },
            },
        }
    return {"description": "any value: a number, text, or a mapping"}


def _node(node_type: NodeType) -> dict[str, Any]:
    fields = node_type.fields
    return {
        "type": "object",
        "title": node_type.name.replace("_", " ").capitalize(),
        "x-category": node_type.category,
        "x-follows": node_type.follows,
        "required": ["id", "type", *sorted(k for k, r in fields.items() if r.endswith("!"))],
        "additionalProperties": False,
        "properties": {
            "id": {"$ref": "#/$defs/node_id"},
            "type": {"const": node_type.name},
            "name": {"type": "string", "description": "a label shown in the panel"},
            "next": {"$ref": "#/$defs/node_ref"},
            **{key: _rule(node_type, key, rule) for key, rule in fields.items()},
        },
    }


def _one(name: str, value: dict[str, Any], title: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": title,
        "required": [name],
        "additionalProperties": False,
        "properties": {name: value},
    }


def _triggers() -> list[dict[str, Any]]:
    filters = {"type": "array", "items": {"$ref": "#/$defs/property_filter"}}
    out = [
        {
            "type": "object",
            "title": "Custom event",
            "required": ["event"],
            "additionalProperties": False,
            "properties": {"event": dict(TEXT), "where": filters},
        }
    ]
    for kind, (_event, thing) in SIMPLE_TRIGGERS.items():
        out.append(_one(kind, {**TEXT, "description": f"the {thing}"}, kind.replace("_", " ")))
    for kind in EVENT_TRIGGERS:
        if kind == "manual":
            out.append(_one(kind, {"type": ["null", "boolean"]}, "manual (API or panel)"))
            continue
        choices: list[dict[str, Any]] = [{"type": "null"}, filters]
        if kind in ("email_clicked", "form_submitted"):
            choices.append({"type": "string", "description": "the URL or the form"})
        out.append(_one(kind, {"oneOf": choices}, kind.replace("_", " ")))
    out.append(
        _one(
            "date",
            {
                "type": "object",
                "required": ["field"],
                "additionalProperties": False,
                "properties": {
                    "field": {**TEXT, "description": "a declared date field"},
                    "yearly": {"type": "boolean"},
                    "offset": {"type": "string", "description": "whole days, like -3 days"},
                    "at": {"type": "string", "pattern": TIME_OF_DAY},
                },
            },
            "date",
        )
    )
    out.append(_one("webhook", {"const": True}, "inbound webhook"))
    out.append(_one("page_visited", {**TEXT, "description": "a URL pattern"}, "page visited"))
    out.append(
        _one(
            "field_changed",
            {
                "type": "object",
                "required": ["field"],
                "additionalProperties": False,
                "properties": {"field": dict(TEXT), "from": {}, "to": {}},
            },
            "field changed",
        )
    )
    for kind, (_event, allowed) in CRM_TRIGGERS.items():
        spec = {
            "type": "object",
            "additionalProperties": False,
            "properties": {a: dict(TEXT) for a in allowed},
        }
        choices = [{"type": "null"}, spec]
        if allowed[0] == "pipeline":
            choices.append(dict(TEXT))
        out.append(_one(kind, {"oneOf": choices}, kind.replace("_", " ")))
    out.append(
        _one(
            "score_crossed",
            {
                "type": "object",
                "required": ["threshold"],
                "additionalProperties": False,
                "properties": {
                    "threshold": {"type": "number"},
                    "direction": {"enum": ["up", "down"], "default": "up"},
                    "score": dict(TEXT),
                },
            },
            "score crossed",
        )
    )
    return out


def automation_schema() -> dict[str, Any]:
    conditions = condition_schema()
    node_defs = {f"node_{name}": _node(t) for name, t in sorted(REGISTRY.items())}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Conveyor automation",
        "description": "Triggers enroll contacts; nodes are the stations they pass, first to last.",
        "type": "object",
        "required": ["key", "nodes"],
        "additionalProperties": False,
        "properties": {
            "key": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
            "name": {"type": "string"},
            "triggers": {"type": "array", "items": {"$ref": "#/$defs/trigger"}},
            "entry": {"$ref": "#/$defs/entry"},
            "exit_when": {"$ref": "#/$defs/condition"},
            "priority": {"$ref": "#/$defs/priority"},
            "start": {"$ref": "#/$defs/node_id"},
            "nodes": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/node"}},
        },
        "$defs": {
            **conditions["$defs"],
            "node_id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"},
            "node_ref": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                "description": "a node's id, or end",
            },
            "trigger": {"oneOf": _triggers()},
            "entry": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "repeat": {"enum": ["once", "every_time", "after"], "default": "once"},
                    "after": {"$ref": "#/$defs/duration"},
                    "max_per_day": {"type": "integer", "minimum": 1},
                    "if": {"$ref": "#/$defs/condition"},
                    "unless": {"$ref": "#/$defs/condition"},
                    "queue_behind": {
                        "oneOf": [dict(TEXT), {"type": "array", "items": {"type": "string"}}]
                    },
                },
            },
            "priority": {
                "type": "object",
                "required": ["group"],
                "additionalProperties": False,
                "properties": {
                    "group": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$"},
                    "level": {
                        "type": "integer",
                        "minimum": PRIORITY_LEVELS.start,
                        "maximum": PRIORITY_LEVELS.stop - 1,
                    },
                    "on_conflict": {"enum": list(ON_CONFLICT), "default": "queue"},
                },
            },
            "node": {"oneOf": [{"$ref": f"#/$defs/{name}"} for name in node_defs]},
            **node_defs,
        },
    }
