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


def test_crm_triggers_match_deal_and_task_events_by_pipeline_and_stage():
    def auto(key: str, trigger: str):
        return automation(f"key: {key}\ntriggers: [{trigger}]\nnodes: [{{id: e, type: end}}]\n")

    index = TriggerIndex([
        (1, auto("qualified", "{deal_stage_changed: {pipeline: sales, to: Qualified}}")),
        (2, auto("won", "{deal_won: sales}")),
        (3, auto("any-deal", "{deal_created: {}}")),
        (4, auto("late-calls", "{task_overdue: {type: call}}")),
    ])  # fmt: skip

    def refs(name, props):
        return [ref for ref, _ in index.matching(name, props)]

    assert refs("deal.stage_changed", {"pipeline": "sales", "from": "Lead", "to": "Qualified"}) == [1]
    assert refs("deal.stage_changed", {"pipeline": "sales", "from": "Qualified", "to": "Won"}) == []
    assert refs("deal.stage_changed", {"pipeline": "other", "to": "Qualified"}) == []
    assert refs("deal.won", {"pipeline": "sales"}) == [2]
    assert refs("deal.lost", {"pipeline": "sales"}) == []
    assert refs("deal.created", {"pipeline": "x"}) == [3]
    assert refs("task.overdue", {"type": "call"}) == [4]
    assert refs("task.overdue", {"type": "email"}) == []


def test_a_crm_trigger_with_an_unknown_key_is_refused_naming_it():
    import pytest

    from conveyor.domain.errors import InvalidInput

    with pytest.raises(InvalidInput) as caught:
        automation("key: k\ntriggers: [{deal_won: {stage: Won}}]\nnodes: [{id: e, type: end}]\n")
    assert caught.value.field == "triggers.0.deal_won.stage"
