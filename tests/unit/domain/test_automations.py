"""Automation definitions: the priority group, its defaults, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.domain.automations import AutomationParser, Priority
from conveyor.domain.conditions import Parser
from conveyor.domain.errors import InvalidInput


def parse(**extra: Any):
    definition = {
        "key": "spring",
        "triggers": [{"tag_added": "spring"}],
        "nodes": [{"id": "hi", "type": "send_email", "template": "spring-1"}],
        **extra,
    }
    return AutomationParser(Parser({}), None).parse(definition)


def test_priority_defaults_to_level_0_and_queue():
    assert parse().priority is None
    assert parse(priority={"group": "promotions"}).priority == Priority("promotions", 0, "queue")
    assert parse(
        priority={"group": "promotions", "level": -5, "on_conflict": "preempt"}
    ).priority == Priority("promotions", -5, "preempt")


@pytest.mark.parametrize(
    ("priority", "field"),
    [
        ("promotions", "priority"),
        ({"level": 3}, "priority.group"),
        ({"group": "Promo Group"}, "priority.group"),
        ({"group": "promotions", "level": "high"}, "priority.level"),
        ({"group": "promotions", "level": 2.5}, "priority.level"),
        ({"group": "promotions", "level": True}, "priority.level"),
        ({"group": "promotions", "level": 5000}, "priority.level"),
        ({"group": "promotions", "on_conflict": "bump"}, "priority.on_conflict"),
        ({"group": "promotions", "weight": 1}, "priority.weight"),
    ],
)
def test_bad_priority_names_the_field(priority, field):
    with pytest.raises(InvalidInput) as caught:
        parse(priority=priority)
    assert caught.value.field == field
