"""Helpers for the pure core's tests: automations from YAML, contacts as facts, a fixed now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from conveyor.domain.automations import Automation, AutomationParser
from conveyor.domain.automations.nodes.actions import ContactRules
from conveyor.domain.automations.run import RunState
from conveyor.domain.conditions import Parser
from conveyor.domain.evaluation import EventFact, Snapshot
from conveyor.domain.fields import FieldDefinition, FieldType

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
FIELDS = {
    "visits": FieldDefinition("visits", FieldType.NUMBER),
    "plan": FieldDefinition("plan", FieldType.TEXT),
    "renews_on": FieldDefinition("renews_on", FieldType.DATE),
}
RULES = ContactRules(FIELDS, {"newsletter": False, "vip": True}, "PL")


def automation(text: str) -> Automation:
    parser = AutomationParser(
        Parser(FIELDS, {"newsletter", "vip"}, set(), {"other", "promo"}), None
    )
    return parser.parse(yaml.safe_load(text))


def facts(
    *,
    tags: set[str] | None = None,
    lists: dict[str, str] | None = None,
    fields: dict[str, Any] | None = None,
    events: list[tuple[str, dict[str, Any]]] = (),
    timezone: str = "UTC",
    score: int = 0,
) -> Snapshot:
    return Snapshot(
        standard={"email": "ada@example.com"},
        score=score,
        fields=dict(fields or {}),
        created_at=NOW,
        updated_at=NOW,
        tags=set(tags or ()),
        lists=dict(lists or {}),
        events=[EventFact(name, NOW, props) for name, props in events],
        timezone=timezone,
    )


def run_at(node: str, *, state: dict[str, Any] | None = None, trigger=None, steps: int = 0):
    return RunState(7, 42, node, state or {}, steps, NOW, trigger or {})


@pytest.fixture
def now() -> datetime:
    return NOW
