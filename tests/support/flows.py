"""Steps the channel and policy tests share: run the engine and delivery until nothing is due,
activate an automation, save a template, create what an automation names — all through the
public API."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

from conveyor.domain.workspace_code import named_refs, template_refs

# The least each channel's template needs: POST /automations refuses a definition naming a
# template the workspace lacks, so tests about something else create these first.
MINIMAL_CONTENT: dict[str, dict[str, Any]] = {
    "email": {"subject": "Hello", "text": "Hello {{ contact.email }}"},
    "sms": {"body": "Hello"},
    "site_message": {"title": "Hello", "body": "Hello"},
    "team": {"subject": "Note", "text": "A contact"},
    "webhook": {"body": "{}"},
}


def settle(conveyor: Any) -> None:
    """Engine and delivery until neither has anything due now (delivery's events can wake runs,
    whose messages then go out too)."""
    for _ in range(20):
        conveyor.engine.run_until_idle()
        if not conveyor.delivery.run_until_idle():
            conveyor.engine.run_until_idle()
            return
    raise AssertionError("engine and delivery did not settle")


def activate(client: Any, tenant: Any, definition: dict[str, Any]) -> None:
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 200, r.text
    r = client.patch(
        f"/automations/{definition['key']}", headers=tenant.admin, json={"status": "active"}
    )
    assert r.status_code == 200, r.text


def save_template(client: Any, tenant: Any, template: dict[str, Any]) -> None:
    r = client.post("/templates", headers=tenant.admin, json=template)
    assert r.status_code == 200, r.text


@cache
def example_templates() -> dict[str, dict[str, Any]]:
    """The templates under examples/templates, by key (for the examples' automations)."""
    folder = Path(__file__).resolve().parents[2] / "examples" / "templates"
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        for template in yaml.safe_load(path.read_text()):
            found[template["key"]] = template
    return found


def provide(
    client: Any,
    headers: dict[str, str],
    definition: dict[str, Any],
    known: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Create every template and list an automation definition names that the workspace
    lacks, so POST /automations accepts it: a template from `known` when it holds the key
    (e.g. example_templates()), else a minimal one for the node's channel. Segments and other
    automations carry meaning of their own: the test creates those itself."""
    r = client.get("/templates", headers=headers)
    assert r.status_code == 200, r.text
    have = {t["key"] for t in r.json()}
    for _, key, channel in template_refs(definition):
        if key not in have:
            body = (known or {}).get(key) or {
                "key": key,
                "channel": channel,
                "content": MINIMAL_CONTENT[channel],
            }
            r = client.post("/templates", headers=headers, json=body)
            assert r.status_code == 200, r.text
            have.add(key)
    lists = {key for _, kind, key in named_refs(definition) if kind == "list"}
    if lists:
        r = client.get("/lists", headers=headers)
        assert r.status_code == 200, r.text
        for key in sorted(lists - {item["key"] for item in r.json()}):
            r = client.post("/lists", headers=headers, json={"key": key})
            assert r.status_code in (200, 201), r.text
