"""The JSON Schema of the condition language, built from the same vocabulary the parser uses.

Published at `/schemas/condition.json` and as `schemas/condition.schema.json` in the repository,
so editors can validate segment and automation files as they are written.
"""

from __future__ import annotations

from typing import Any

from conveyor.domain.conditions import (
    AGGREGATES,
    AUTOMATION_STATUSES,
    COMPARE_OPS,
    COUNT_OPS,
    DEAL_OPS,
    DEAL_STATUSES,
    MESSAGE_EVENTS,
    OPS_BY_TYPE,
    PROPERTY_OPS,
    SCORE_OPS,
)
from conveyor.domain.contacts import SubscriptionStatus

SCHEMA_ID = "https://conveyor.invalid/schemas/condition.json"


def _duration() -> dict[str, Any]:
    return {
        "description": "'90 days', '1 day 6 hours', '36h', or {\"days\": 90}",
        "oneOf": [
            {
                "type": "string",
                "pattern": r"^\s*\d+\s*[A-Za-z]+(\s*,?\s*(and\s+)?\d+\s*[A-Za-z]+)*\s*$",
            },
            {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    u: {"type": "integer", "minimum": 0}
                    for u in ("weeks", "days", "hours", "minutes", "seconds")
                },
            },
        ],
    }


def condition_schema() -> dict[str, Any]:
    all_field_ops = sorted(set().union(*OPS_BY_TYPE.values()))
    statuses = sorted(s.value for s in SubscriptionStatus)
    scalar = {"type": ["string", "number", "boolean"]}
    window = {
        "oneOf": [
            {"$ref": "#/$defs/duration"},
            {"const": "since_entry"},
            {
                "type": "object",
                "additionalProperties": False,
                "properties": {"from": {"type": "string"}, "to": {"type": "string"}},
            },
        ]
    }
    recency = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
        "properties": {
            "within_last": {"$ref": "#/$defs/duration"},
            "more_than_ago": {"$ref": "#/$defs/duration"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Conveyor condition",
        "description": "Who enters, which branch, when a wait or goal is met, who is in a segment.",
        "$ref": "#/$defs/condition",
        "$defs": {
            "duration": _duration(),
            "condition": {
                "oneOf": [
                    {"$ref": f"#/$defs/{name}"}
                    for name in (
                        "all",
                        "any",
                        "not",
                        "field",
                        "tags",
                        "list",
                        "event",
                        "message",
                        "automation",
                        "deal",
                        "segment",
                        "score",
                    )
                ]
            },
            "all": _group("all"),
            "any": _group("any"),
            "not": {
                "type": "object",
                "required": ["not"],
                "additionalProperties": False,
                "properties": {"not": {"$ref": "#/$defs/condition"}},
            },
            "field": {
                "type": "object",
                "required": ["field"],
                "additionalProperties": False,
                "description": "Operators by field type: "
                + "; ".join(f"{t}: {', '.join(sorted(ops))}" for t, ops in OPS_BY_TYPE.items()),
                "properties": {
                    "field": {"type": "string"},
                    "op": {"enum": all_field_ops, "default": "eq"},
                    "value": {},
                },
            },
            "tags": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "properties": {
                    "tag": {"type": "string", "minLength": 1},
                    "tags_any": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                    "tags_all": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                },
            },
            "list": {
                "type": "object",
                "required": ["list"],
                "additionalProperties": False,
                "properties": {
                    "list": {"type": "string"},
                    "status": {
                        "oneOf": [
                            {"enum": statuses},
                            {"type": "array", "items": {"enum": statuses}, "minItems": 1},
                        ],
                        "default": "subscribed",
                    },
                },
            },
            "property_filter": {
                "type": "object",
                "required": ["property"],
                "additionalProperties": False,
                "properties": {
                    "property": {"type": "string", "description": "dotted path, e.g. cart.total"},
                    "op": {"enum": sorted(PROPERTY_OPS), "default": "eq"},
                    "value": {"oneOf": [scalar, {"type": "array", "items": scalar}]},
                },
            },
            "event": {
                "type": "object",
                "required": ["event"],
                "additionalProperties": False,
                "properties": {
                    "event": {"type": "string", "minLength": 1},
                    "where": {"type": "array", "items": {"$ref": "#/$defs/property_filter"}},
                    "within": window,
                    "count": {
                        "type": "object",
                        "minProperties": 1,
                        "maxProperties": 1,
                        "additionalProperties": False,
                        "properties": {
                            op: {"type": "integer", "minimum": 0} for op in sorted(COUNT_OPS)
                        },
                    },
                    "aggregate": {"enum": sorted(AGGREGATES)},
                    "property": {"type": "string"},
                    "op": {"enum": sorted(COMPARE_OPS)},
                    "value": {"type": "number"},
                    "first": recency,
                    "last": recency,
                },
            },
            "message": {
                "type": "object",
                "required": ["message"],
                "additionalProperties": False,
                "properties": {
                    "message": {"enum": sorted(MESSAGE_EVENTS)},
                    "template": {"type": "string"},
                    "within": window,
                    "count": {"$ref": "#/$defs/event/properties/count"},
                },
            },
            "automation": {
                "type": "object",
                "required": ["automation"],
                "additionalProperties": False,
                "description": "active: inside now (running or queued); entered, completed "
                "(to its end, or a final goal), goal_reached (any goal, or the one named), "
                "exited (by its exit condition), finished (any way out): at any time or in "
                "'within'.",
                "properties": {
                    "automation": {"type": "string", "minLength": 1},
                    "status": {"enum": list(AUTOMATION_STATUSES), "default": "active"},
                    "goal": {"type": "string", "minLength": 1},
                    "within": window,
                },
                # A goal is a goal reached: with it, a status other than goal_reached is wrong.
                "dependentSchemas": {"goal": {"properties": {"status": {"const": "goal_reached"}}}},
            },
            "deal": {
                "type": "object",
                "required": ["deal"],
                "additionalProperties": False,
                "description": "The contact is the main contact of a deal in this pipeline, "
                "stage and status, worth this much ({deal: {}}: any deal).",
                "properties": {
                    "deal": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "pipeline": {"type": "string", "minLength": 1},
                            "stage": {"type": "string", "minLength": 1},
                            "status": {"enum": list(DEAL_STATUSES)},
                            "value": {
                                "type": "object",
                                "required": ["op", "value"],
                                "additionalProperties": False,
                                "properties": {
                                    "op": {"enum": list(DEAL_OPS)},
                                    "value": {"type": "number", "minimum": 0},
                                },
                            },
                        },
                    }
                },
            },
            "segment": {
                "type": "object",
                "required": ["segment"],
                "additionalProperties": False,
                "properties": {"segment": {"type": "string"}},
            },
            "score": {
                "type": "object",
                "required": ["score"],
                "additionalProperties": False,
                "description": "A named score of the scoring model, its value now (decayed); "
                "'score' is the contact's own score",
                "properties": {
                    "score": {"type": "string", "minLength": 1},
                    "op": {"enum": sorted(SCORE_OPS), "default": "gte"},
                    "value": {
                        "oneOf": [
                            {"type": "number"},
                            {
                                "type": "array",
                                "items": {"type": "number"},
                                "minItems": 2,
                                "maxItems": 2,
                            },
                        ]
                    },
                },
            },
        },
    }


def _group(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name],
        "additionalProperties": False,
        "properties": {
            name: {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}}
        },
    }
