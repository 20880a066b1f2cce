"""The trigger index: which active automations an event enrolls into, highest level first."""

from __future__ import annotations

from conveyor.domain.automations.triggers import TriggerIndex, falls_today, trigger_properties
from conveyor.domain.conditions import FieldIs

from .conftest import automation


def test_events_find_their_automations_by_name_and_properties():
    big = automation(
        "key: big\ntriggers: [{order_completed: [{property: total, op: gte, value: 1000}]}]\n"
        "priority: {group: sales, level: 5}\nnodes: [{id: e, type: end}]\n"
    )
    every = automation(
        "key: every\ntriggers: [{event: order_completed}]\nnodes: [{id: e, type: end}]\n"
    )
    pricing = automation(
        "key: pricing\ntriggers: [{page_visited: 'https://shop.example/pricing*'}]\nnodes: [{id: e, type: end}]\n"
    )
    index = TriggerIndex([(1, every), (2, big), (3, pricing)])
    assert [ref for ref, _ in index.matching("order_completed", {"total": 1500})] == [2, 1]
    assert [ref for ref, _ in index.matching("order_completed", {"total": 10})] == [1]
    assert [r for r, _ in index.matching("page", {"url": "https://shop.example/pricing/team"})] == [
        3
    ]
    assert index.matching("page", {"url": "https://shop.example/about"}) == []
    assert index.matching("nothing", {}) == []


def test_date_triggers_are_kept_apart():
    birthday = automation(
        "key: bday\ntriggers: [{date: {field: renews_on, yearly: true, at: '09:00'}}]\n"
        "nodes: [{id: e, type: end}]\n"
    )
    index = TriggerIndex([(1, birthday)])
    assert not index and [ref for ref, _, _ in index.dates] == [1]
    ((_, _, trigger),) = index.dates
    assert falls_today(trigger) == FieldIs("renews_on", falls_today(trigger).type, "anniversary", 0)


def test_a_system_trigger_keeps_its_name():
    assert trigger_properties("list.subscribed", "system", {"list": "n"}) == {
        "list": "n",
        "event": "list.subscribed",
    }
    assert trigger_properties("order_completed", "track", {"total": 1}) == {"total": 1}
