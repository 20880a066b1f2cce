"""The CRM node types: what change each asks for, and what their definitions may say."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.domain.automations import CrmChange
from conveyor.domain.automations.nodes import execute
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator

from .conftest import NOW, automation, facts
from .test_nodes import one, view

EV = Evaluator()


def change(node_yaml: str, *, trigger=None, fields=None) -> CrmChange:
    node, _ = one(node_yaml)
    result = execute(node, view(node, trigger=trigger), facts(fields=fields), NOW, EV)
    assert (result.kind, result.outcome, result.next) == ("next", "done", "after")
    [effect] = result.effects
    assert isinstance(effect, CrmChange)
    return effect


def test_create_deal_takes_its_value_from_the_trigger_and_its_owner_from_a_field():
    effect = change(
        "  - {id: d, type: create_deal, pipeline: sales, stage: Won, value: '{{ event.total }}',"
        " owner: {field: account_manager}}\n",
        trigger={"total": 1499.5},
        fields={"account_manager": "max@acme.example"},
    )
    assert effect.action == "create_deal"
    assert effect.values["value"] == 1499.5  # typed: the whole value is the property
    assert effect.values["owner"] == {"member": "max@acme.example", "from_field": "account_manager"}
    assert effect.values["title"] == "t: ada@example.com"  # the automation and the contact


def test_update_deal_is_about_the_trigger_events_deal():
    effect = change(
        "  - {id: d, type: update_deal, stage: Qualified, owner: {round_robin: sales}}\n",
        trigger={"deal_id": 12, "event": "deal.created"},
    )
    assert effect.values == {
        "stage": "Qualified", "owner": {"round_robin": "sales"}, "deal_id": 12,
    }  # fmt: skip


def test_create_task_is_due_after_its_delay_and_names_its_assignee():
    effect = change(
        "  - {id: t1, type: create_task, title: 'Call {{ event.name }}', task: call,"
        " due_in: 2 days, assignee: contact_owner}\n",
        trigger={"name": "Ada"},
    )
    assert effect.values["title"] == "Call Ada"
    assert effect.values["due_at"] == (NOW + timedelta(days=2)).isoformat()
    assert effect.values["assignee"] == {"contact_owner": True}
    assert effect.values["task"] == "call" and effect.values["deal_id"] is None


@pytest.mark.parametrize(
    ("node", "field"),
    [
        ("{id: d, type: create_deal}", "nodes.0.pipeline"),
        ("{id: d, type: create_deal, pipeline: s, value: -5}", "nodes.0.value"),
        ("{id: d, type: create_deal, pipeline: s, status: maybe}", "nodes.0.status"),
        ("{id: d, type: create_deal, pipeline: s, owner: {round_robin: boss}}",
         "nodes.0.owner.round_robin"),
        ("{id: d, type: create_deal, pipeline: s, owner: {team: x}}", "nodes.0.owner"),
        ("{id: d, type: update_deal, stage: A, stages: [B]}", "nodes.0.stages"),
        ("{id: d, type: update_deal, status: won, lost_reason: price}", "nodes.0.lost_reason"),
        ("{id: d, type: assign_owner}", "nodes.0.owner"),
        ("{id: d, type: create_task, title: x, task: fax}", "nodes.0.task"),
        ("{id: d, type: add_note}", "nodes.0.body"),
    ],
)
def test_bad_crm_nodes_are_refused_naming_the_field(node: str, field: str):
    with pytest.raises(InvalidInput) as caught:
        automation(f"key: t\ntriggers: [{{event: go}}]\nnodes:\n  - {node}\n")
    assert caught.value.field == field


def test_later_conditions_of_the_same_run_see_a_deal_created_and_moved():
    from conveyor.domain.automations.nodes.crm import UNSAVED, apply_deal_change
    from conveyor.domain.evaluation import DealFact

    snap = facts()
    snap.deals.append(DealFact(3, "renewals", "Due", "open", 500))
    apply_deal_change(CrmChange("create_deal", {"pipeline": "sales", "value": 1200}), snap)
    assert snap.deals[-1] == DealFact(UNSAVED, "sales", "", "open", 120000)
    apply_deal_change(
        CrmChange("update_deal", {"pipeline": "sales", "stages": ["Qualified", "Won"],
                                  "status": "won", "deal_id": None}), snap)
    assert snap.deals == [DealFact(3, "renewals", "Due", "open", 500),
                          DealFact(UNSAVED, "sales", "Won", "won", 120000)]
    apply_deal_change(CrmChange("update_deal", {"deal_id": 3, "value": "oops"}), snap)
    assert snap.deals[0].value_minor == 500  # a value the shell will refuse changes nothing
