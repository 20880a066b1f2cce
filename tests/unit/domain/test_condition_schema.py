"""The published JSON Schema stays in sync with the parser and accepts what the parser accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conveyor.domain.condition_schema import condition_schema
from conveyor.domain.conditions import parse_condition
from conveyor.domain.fields import define_field

ROOT = Path(__file__).resolve().parents[3]
FIELDS = {"country": define_field("country", "text"), "age": define_field("age", "number")}


def test_the_committed_schema_file_is_current():
    committed = json.loads((ROOT / "schemas" / "condition.schema.json").read_text())
    assert committed == json.loads(json.dumps(condition_schema())), "regenerate schemas/condition.schema.json"


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "segments").glob("*.yaml")), ids=lambda p: p.name)
def test_example_segments_are_valid(path):
    condition = yaml.safe_load(path.read_text())["condition"]
    jsonschema.validate(condition, condition_schema())
    parse_condition(condition, FIELDS)


@pytest.mark.parametrize(
    "condition",
    [
        {"any": [{"tag": "a"}, {"not": {"list": "news", "status": ["subscribed", "unconfirmed"]}}]},
        {"field": "age", "op": "between", "value": [18, 65]},
        {"event": "order_completed", "aggregate": "sum", "property": "total", "op": "gte", "value": 500, "within": {"days": 90}},
        {"event": "login", "last": {"more_than_ago": "30 days"}},
        {"message": "clicked", "template": "weekly", "within": "7d"},
        {"segment": "vips"},
        {"automation": "onboarding"},
        {"automation": "cart", "status": "goal_reached", "goal": "ordered", "within": "30 days"},
        {"automation": "cart", "goal": "ordered"},
        {"deal": {}},
        {"deal": {"pipeline": "sales", "stage": "Won", "status": "won",
                  "value": {"op": "gte", "value": 1000}}},
        {"score": "engagement", "op": "gte", "value": 50},
        {"score": "fit", "op": "between", "value": [10, 20.5]},
        {"score": "score", "op": "gt", "value": 3},
    ],
)
def test_valid_conditions_pass_both(condition):
    jsonschema.validate(condition, condition_schema())
    parse_condition(condition, FIELDS)


@pytest.mark.parametrize(
    "condition",
    [{"all": []}, {"tag": "a", "list": "b"}, {"event": "x", "count": {"most": 3}}, {"colour": "red"},
     {"not": {"tag": "a"}, "extra": 1}, {"automation": "a", "status": "left"},
     {"automation": "a", "status": "exited", "goal": "g"}, {"deal": {"status": "maybe"}},
     {"deal": {"value": {"op": "gte", "value": -1}}}, {"deal": {"owner": 1}},
     {"score": "engagement", "op": "contains", "value": 1}, {"score": "e", "value": "high"}],
)
def test_invalid_conditions_fail_the_schema(condition):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(condition, condition_schema())
