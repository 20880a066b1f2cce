"""Which automations an event enrolls into: an index from event name to active automations."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from conveyor.domain.automations.model import Automation, DateTrigger, Trigger
from conveyor.domain.conditions import All, Condition, FieldIs, Not
from conveyor.domain.evaluation import property_matches
from conveyor.domain.fields import FieldType

K = TypeVar("K")


def matches(trigger: Trigger, name: str, properties: dict[str, Any]) -> bool:
    if trigger.date is not None or trigger.name != name:
        return False
    if trigger.url_pattern is not None:
        url = properties.get("url")
        if not isinstance(url, str) or not fnmatch.fnmatchcase(url, trigger.url_pattern):
            return False
    return all(property_matches(f, properties) for f in trigger.where)


class TriggerIndex(Generic[K]):
    """Active automations by the names of the events that can enroll into them.

    An event's matches come highest priority level first (then by key), so that of two
    automations of a priority group the more important one gets the contact."""

    def __init__(self, automations: Iterable[tuple[K, Automation]]) -> None:
        ranked = sorted(automations, key=lambda pair: (-pair[1].level, pair[1].key))
        self._by_name: dict[str, list[tuple[K, Automation]]] = defaultdict(list)
        self.dates: list[tuple[K, Automation, DateTrigger]] = []
        for ref, automation in ranked:
            for name in dict.fromkeys(t.name for t in automation.triggers if t.date is None):
                self._by_name[name].append((ref, automation))
            self.dates += [(ref, automation, t.date) for t in automation.triggers if t.date]

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def matching(self, name: str, properties: dict[str, Any]) -> list[tuple[K, Automation]]:
        return [
            (ref, automation)
            for ref, automation in self._by_name.get(name, ())
            if any(matches(t, name, properties) for t in automation.triggers)
        ]


def trigger_properties(name: str, kind: str, properties: dict[str, Any]) -> dict[str, Any]:
    """What a run keeps of its trigger event: its properties (a system event's name too)."""
    return properties if kind != "system" else {**properties, "event": name}


def falls_today(trigger: DateTrigger) -> Condition:
    """Contacts whose date field plus the offset is their local today (every year, if yearly)."""

    def field(op: str, value: Any) -> FieldIs:
        return FieldIs(trigger.field, FieldType.DATE, op, value)

    k = trigger.offset_days
    if trigger.yearly:
        return field("anniversary", -k)
    if k == 0:
        return field("today", None)
    # The date is exactly |k| days ago (or ahead): within |k| days but not within |k| - 1.
    op = "within_last" if k > 0 else "within_next"
    return All((field(op, abs(k) * 86400), Not(field(op, (abs(k) - 1) * 86400))))
