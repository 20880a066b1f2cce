"""The builder's drafts on both databases: saved as written (even invalid), reopened, listed per
workspace and per automation, never touching the live version; checks say what the CLI says;
publishing validates in full and removes the draft."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.services.automation_drafts import read_yaml, to_yaml
from tests.integration.conftest import make_tenant

ROOT = Path(__file__).resolve().parents[2]
CART = (ROOT / "examples" / "automations" / "abandoned-cart.yaml").read_text()


def _templates(conveyor, ws, *keys):
    for key in keys:
        conveyor.templates.save(ws, key, "email", {"subject": key, "html": "<p>hi</p>"})


def test_drafts_are_kept_apart_from_the_live_version(conveyor):
    acme, globex = make_tenant(conveyor, "acme"), make_tenant(conveyor, "globex")
    ws, drafts = acme.workspace, conveyor.automation_drafts
    _templates(conveyor, ws, "cart-reminder-1", "cart-reminder-2")
    conveyor.automations.apply(ws, yaml.safe_load(CART))

    half = CART.replace("template: cart-reminder-2", "template:")  # not valid yet
    saved = drafts.save(ws, half)
    assert (saved.automation_key, saved.name, saved.source) == (
        "abandoned-cart",
        "Abandoned cart",
        half,
    )
    assert conveyor.automations.get(ws, "abandoned-cart").version == 1  # live untouched

    broken = drafts.save(ws, "key: [unclosed", saved.id)  # not even YAML: kept as written
    assert broken.id == saved.id and broken.source == "key: [unclosed"
    assert broken.name == "Untitled automation" and broken.automation_key is None
    other = drafts.save(ws, CART.replace("Abandoned cart", "Cart v2"))
    assert [d.id for d in drafts.all(ws)] == [other.id, saved.id]
    assert [d.id for d in drafts.all(ws, "abandoned-cart")] == [other.id]
    assert drafts.get(ws, saved.id).source == "key: [unclosed"

    # another workspace sees, changes and discards none of them
    assert drafts.all(globex.workspace) == []
    with pytest.raises(NotFound):
        drafts.get(globex.workspace, saved.id)
    with pytest.raises(NotFound):
        drafts.save(globex.workspace, "key: x", saved.id)
    with pytest.raises(NotFound):
        drafts.discard(globex.workspace, saved.id)
    with pytest.raises(InvalidInput) as too_big:
        drafts.save(ws, "#" * 300_000)
    assert too_big.value.field == "source"

    drafts.discard(ws, saved.id)
    assert [d.id for d in drafts.all(ws)] == [other.id]

    info, what = drafts.publish(ws, yaml.safe_load(other.source), other.id)
    assert (info.version, info.name, what) == (2, "Cart v2", "new version")
    assert drafts.all(ws) == []


def test_checks_say_what_the_cli_says(conveyor):
    ws = make_tenant(conveyor, "acme").workspace
    drafts = conveyor.automation_drafts
    cart = yaml.safe_load(CART)
    assert [p.text for p in drafts.check(ws, cart)] == [
        "nodes.1.template: no email template 'cart-reminder-1'",
        "nodes.3.template: no email template 'cart-reminder-2'",
    ]
    _templates(conveyor, ws, "cart-reminder-1", "cart-reminder-2")
    assert drafts.check(ws, cart) == []
    cart["nodes"][2]["for"] = "a while"
    (problem,) = drafts.check(ws, cart)
    assert problem.path == "nodes.2.for"
    with pytest.raises(InvalidInput) as refused:
        drafts.publish(ws, cart)
    assert refused.value.field == "nodes.2.for"
    with pytest.raises(NotFound):
        conveyor.automations.get(ws, "abandoned-cart")  # nothing half-valid was saved
    assert drafts.waiting(ws, "abandoned-cart") == 0


def test_the_yaml_view_reads_back_what_it_writes_and_points_at_errors():
    definition = yaml.safe_load(CART)
    assert read_yaml(to_yaml(definition)) == (definition, None)
    _, problem = read_yaml("key: cart\nnodes:\n  - id: a\n    type: [wait\n")
    assert problem is not None and problem.line == 5
