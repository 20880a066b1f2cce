"""CRM actions: create or move a deal, assign an owner, create a task, add a note.

Each handler turns its node into one CrmChange with the trigger's `{{ event.x }}` filled in and
a field-based owner read from the contact's facts; the shell resolves members and deals and
writes the change in the step's transaction (a deal never appears twice after a crash).

Owners and assignees are written as one of:
  `owner: ada@acme.com` (a member's email or id), `owner: {field: account_manager}` (the member
  a contact field names), `owner: {round_robin: sales}` (the next member of a role, in turn),
  `owner: contact_owner` or `owner: deal_owner`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from conveyor.domain.automations.effects import CrmChange
from conveyor.domain.automations.model import Node
from conveyor.domain.automations.nodes.actions import render_value
from conveyor.domain.automations.nodes.base import NodeType, Result, RunView
from conveyor.domain.conditions import Condition
from conveyor.domain.crm import ROLES, STATUSES, TASK_TYPES, to_minor
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import DealFact, Evaluator, Snapshot

SPECIAL_OWNERS = ("contact_owner", "deal_owner")


def check_owner(value: Any, path: str) -> None:
    """An owner spec as written in a node (see the module's docstring)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return
    if isinstance(value, str) and value.strip():
        return
    if isinstance(value, dict) and len(value) == 1:
        kind, arg = next(iter(value.items()))
        if kind == "field" and isinstance(arg, str) and arg:
            return
        if kind == "round_robin" and arg in ROLES:
            return
        if kind == "round_robin":
            raise InvalidInput(f"{path}.round_robin", f"one of {', '.join(ROLES)}")
    raise InvalidInput(
        path,
        "a member's email or id, {field: F}, {round_robin: ROLE}, contact_owner or deal_owner",
    )


def owner_spec(value: Any, snap: Snapshot) -> dict[str, Any]:
    """What the shell needs to find the member: a field's value is read here, from the facts."""
    if isinstance(value, str) and value in SPECIAL_OWNERS:
        return {value: True}
    if isinstance(value, dict) and "field" in value:
        name = value["field"]
        found = snap.fields.get(name, snap.standard.get(name))
        return {"member": found, "from_field": name}
    if isinstance(value, dict):
        return dict(value)
    return {"member": value}


def _check(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    for key in ("owner", "assignee"):
        if key in config:
            check_owner(config[key], f"{path}.{key}")
    if "stages" in config and "stage" in config:
        raise InvalidInput(f"{path}.stages", "give either stage or stages")
    moves = config.get("stages", [])
    for i, stage in enumerate(moves):
        if stage in moves[:i] and moves[i - 1] != stage:
            raise InvalidInput(f"{path}.stages.{i}", f"back to '{stage}': a cycle of moves")
    if config.get("lost_reason") is not None and config.get("status") != "lost":
        raise InvalidInput(f"{path}.lost_reason", "only with status: lost")
    value = config.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise InvalidInput(f"{path}.value", "a deal value cannot be negative")


def _change(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    c = {k: v for k, v in node.config.items() if k != "name"}
    values: dict[str, Any] = {}
    for key, raw in c.items():
        if key in ("owner", "assignee"):
            values[key] = owner_spec(raw, snap)
        elif key == "due_in":
            values["due_at"] = (now + timedelta(seconds=raw)).isoformat()
        else:
            values[key] = render_value(raw, run.trigger)
    if node.type in ("update_deal", "add_note", "assign_owner", "create_task"):
        # The deal the trigger event is about, when it is about one.
        values.setdefault("deal_id", run.trigger.get("deal_id"))
    if node.type == "create_deal":
        values.setdefault("title", f"{run.automation}: {_who(snap)}")
    change = CrmChange(node.type, values)
    shown = " ".join(
        str(p)
        for p in (node.type, c.get("pipeline"), c.get("stage") or c.get("task"), c.get("title"))
        if p not in (None, "")
    )
    return Result("next", "done", shown, next=node.next, effects=(change,))


UNSAVED = 0  # the id of a deal this run created, until the shell has written it


def apply_deal_change(change: CrmChange, snap: Snapshot) -> None:
    """What a deal change does to the contact's facts, so later conditions of the same run see
    it. The shell writes the change (and its events replace these facts with the stored deal);
    a change it then refuses fails the step. A created deal without a stage has an unknown
    one (the pipeline's first) until then."""
    v = change.values
    try:
        value = to_minor(v["value"]) if "value" in v else None
    except InvalidInput:
        return
    if change.action == "create_deal":
        status = v.get("status", "open")
        snap.deals.append(
            DealFact(UNSAVED, str(v.get("pipeline")), v.get("stage") or "", status, value or 0)
        )
        return
    if change.action != "update_deal":
        return
    mine = [d for d in snap.deals if d.id == v.get("deal_id")] or [
        d for d in snap.deals if d.status == "open" and v.get("pipeline") in (None, d.pipeline)
    ][-1:]
    if not mine:
        return
    deal = mine[0]
    moves = v.get("stages") or ([v["stage"]] if v.get("stage") else [])
    new = replace(
        deal,
        stage=moves[-1] if moves else deal.stage,
        status=v.get("status") or deal.status,
        value_minor=deal.value_minor if value is None else value,
    )
    snap.deals[snap.deals.index(deal)] = new


def _who(snap: Snapshot) -> str:
    names = [snap.standard.get("first_name"), snap.standard.get("last_name")]
    return " ".join(n for n in names if n) or snap.standard.get("email") or "contact"


def _check_assign(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    _check(config, condition, path)
    if "owner" not in config:
        raise InvalidInput(f"{path}.owner", "an assign_owner node needs 'owner'")


DEAL_FIELDS = {
    "pipeline": "text",
    "stage": "text",
    "title": "text",
    "value": "any",  # a number or "{{ event.total }}"
    "currency": "text",
    "status": "choice",
    "lost_reason": "text",
    "owner": "any",
    "expected_close": "text",
    "fields": "any",
}
TYPES = (
    NodeType(
        "create_deal",
        "action",
        {**DEAL_FIELDS, "pipeline": "text!"},
        _change,
        {"status": STATUSES},
        check=_check,
    ),
    NodeType(
        "update_deal",
        "action",
        {**DEAL_FIELDS, "stages": "list"},
        _change,
        {"status": STATUSES},
        check=_check,
    ),
    NodeType(
        "assign_owner",
        "action",
        {"owner": "any!", "of": "choice"},
        _change,
        {"of": ("contact", "deal", "both")},
        check=_check_assign,
    ),
    NodeType(
        "create_task",
        "action",
        {"title": "text!", "task": "choice", "due_in": "duration", "assignee": "any"},
        _change,
        {"task": TASK_TYPES},
        check=_check,
    ),
    NodeType("add_note", "action", {"body": "text!"}, _change),
)
