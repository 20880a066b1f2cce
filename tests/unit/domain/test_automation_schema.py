"""The published automation JSON Schema stays in sync with the node registry and the parser, and
accepts every example automation the parser accepts."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from conveyor.domain.automations import REGISTRY
from conveyor.domain.automations.parse import CRM_TRIGGERS, EVENT_TRIGGERS, SIMPLE_TRIGGERS
from conveyor.domain.automations.schema import automation_schema

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples" / "automations").glob("*.yaml"))


def test_the_committed_schema_file_is_current():
    committed = json.loads((ROOT / "schemas" / "automation.schema.json").read_text())
    assert committed == json.loads(json.dumps(automation_schema())), (
        "regenerate schemas/automation.schema.json"
    )


def test_the_schema_is_a_valid_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(automation_schema())


def test_every_node_type_and_its_fields_are_in_the_schema():
    defs = automation_schema()["$defs"]
    for name, node_type in REGISTRY.items():
        node = defs[f"node_{name}"]
        assert node["properties"]["type"] == {"const": name}
        assert set(node["properties"]) == {"id", "type", "name", "next", *node_type.fields}
        required = {k for k, r in node_type.fields.items() if r.endswith("!")}
        assert set(node["required"]) == {"id", "type", *required}
    listed = {ref["$ref"].rsplit("/", 1)[1] for ref in defs["node"]["oneOf"]}
    assert listed == {f"node_{n}" for n in REGISTRY}


def test_every_trigger_preset_is_in_the_schema():
    named = {next(iter(t["required"])) for t in automation_schema()["$defs"]["trigger"]["oneOf"]}
    presets = {*SIMPLE_TRIGGERS, *EVENT_TRIGGERS, *CRM_TRIGGERS}
    presets |= {"event", "date", "webhook", "page_visited", "field_changed", "score_crossed"}
    assert named == presets


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_automations_are_valid(path):
    jsonschema.validate(yaml.safe_load(path.read_text()), automation_schema())


def _cart() -> dict:
    return yaml.safe_load((ROOT / "examples" / "automations" / "abandoned-cart.yaml").read_text())


@pytest.mark.parametrize(
    "change",
    [
        lambda a: a["nodes"][0].update(type="teleport"),
        lambda a: a["nodes"][1].pop("template"),
        lambda a: a["nodes"][1].update(colour="red"),
        lambda a: a["nodes"][2].update({"for": {"fortnights": 1}}),
        lambda a: a["nodes"][1].update({"class": "urgent"}),
        lambda a: a["nodes"][1].update(send_at="25:00"),
        lambda a: a.update(triggers=[{"cart_abandoned": None}]),
        lambda a: a.update(entry={"repeat": "sometimes"}),
        lambda a: a.update(key="Not A Key"),
        lambda a: a.update(nodes=[]),
    ],
)
def test_invalid_automations_fail_the_schema(change):
    automation = _cart()
    change(automation)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(automation, automation_schema())
