"""The engine's hand on the sales side: carry out a step's CrmChange, address a team
notification to the contact's or the deal's owner, and keep a tick's deal facts current,
inside the tick's transaction.

InvalidInput (an unknown stage, a member the field names who is not in the workspace, no deal
to update) fails the step with that reason; nothing of the change is written."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conveyor.domain import crm
from conveyor.domain.automations import CrmChange, Send
from conveyor.domain.automations.nodes.crm import UNSAVED
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import DealFact, Snapshot
from conveyor.services.crm.writer import CrmWriter, DealDraft
from conveyor.store.records import DealRecord, MemberRecord

DEAL_KEYS = ("title", "value", "currency", "status", "lost_reason", "expected_close", "fields")


def apply(w: CrmWriter, contact_id: int, change: CrmChange) -> str | None:
    """Carry out `change` for the contact; returns what was done, for the step's reason."""
    v = change.values
    if change.action == "create_deal":
        values = {k: v[k] for k in (*DEAL_KEYS, "pipeline", "stage") if k in v}
        values["contact_id"] = contact_id
        if "owner" in v:
            values["owner_id"] = _owner(w, v["owner"], contact_id, None).id
        deal = w.create_deal(DealDraft(values))
        return f"deal {deal.id} created in {v['pipeline']}/{deal.stage}"
    if change.action == "update_deal":
        deal = _deal(w, contact_id, v)
        changes = {k: v[k] for k in (*DEAL_KEYS, "stage", "stages") if k in v}
        if "owner" in v:
            changes["owner_id"] = _owner(w, v["owner"], contact_id, deal).id
        new = w.update_deal(deal, changes)
        return f"deal {deal.id} now {new.stage}, {new.status}"
    if change.action == "assign_owner":
        of = v.get("of", "contact")
        deal = _deal(w, contact_id, v, required=of != "contact")
        member = _owner(w, v["owner"], contact_id, deal)
        if of in ("contact", "both"):
            w.set_contact_owner(contact_id, member)
        if deal is not None and of != "contact":
            w.update_deal(deal, {"owner_id": member.id})
        return f"owner {member.email}"
    if change.action == "create_task":
        deal = _deal(w, contact_id, v, required=False)
        values: dict[str, Any] = {
            "type": v.get("task", "todo"),
            "title": v["title"],
            "due_at": v.get("due_at"),
            "contact_id": contact_id,
            "deal_id": deal.id if deal else None,
        }
        if "assignee" in v:
            values["assignee_id"] = _owner(w, v["assignee"], contact_id, deal).id
        task = w.create_task(values)
        return f"task {task.id} created"
    if change.action == "add_note":
        deal = _deal(w, contact_id, v, required=False)
        w.add_note(v["body"], deal=deal, contact_id=contact_id)
        return None
    raise InvalidInput("type", f"unknown CRM action {change.action}")


def team_recipients(w: CrmWriter, contact_id: int, trigger: dict[str, Any], send: Send) -> Send:
    """`to: [contact_owner, deal_owner, sales@…]`: the owners as their email addresses. An
    owner that is not there is left out; InvalidInput only when nobody is left."""
    to = send.config.get("to") or []
    if not any(a in ("contact_owner", "deal_owner") for a in to):
        return send
    out: list[str] = []
    missing: InvalidInput | None = None
    for address in to:
        if address in ("contact_owner", "deal_owner"):
            try:
                deal = (
                    _deal(w, contact_id, {"deal_id": trigger.get("deal_id")})
                    if address == "deal_owner"
                    else None
                )
                address = _owner(w, {address: True}, contact_id, deal).email
            except InvalidInput as exc:
                missing = exc
                continue
        if address not in out:
            out.append(address)
    if not out and missing is not None:
        raise missing
    return replace(send, config={**send.config, "to": out})


def _deal(
    w: CrmWriter, contact_id: int, v: dict[str, Any], *, required: bool = True
) -> DealRecord | None:
    """The trigger event's deal, else the contact's newest open deal (in `pipeline`, if
    given); None (or InvalidInput when required) if there is none."""
    if v.get("deal_id") is not None:
        deal = w.tx.crm.deal(w.workspace_id, int(v["deal_id"]))
        if deal is not None:
            return deal
    pipeline_id = w.pipeline(v["pipeline"])[0].id if v.get("pipeline") else None
    found = w.tx.crm.deals(
        w.workspace_id, contact_id=contact_id, status="open", pipeline_id=pipeline_id
    )
    if found:
        return found[-1]
    if required:
        raise InvalidInput("deal", "the contact has no open deal to change")
    return None


def _owner(
    w: CrmWriter, spec: dict[str, Any], contact_id: int, deal: DealRecord | None
) -> MemberRecord:
    if spec.get("round_robin"):
        return w.round_robin(spec["round_robin"], "owner.round_robin")
    if spec.get("contact_owner"):
        owner = w.tx.crm.owner_of(contact_id)
        if owner is None:
            raise InvalidInput("owner", "the contact has no owner")
        return w.member(owner, "owner")
    if spec.get("deal_owner"):
        if deal is None or deal.owner_id is None:
            raise InvalidInput("owner", "the deal has no owner")
        return w.member(deal.owner_id, "owner")
    if spec.get("from_field") and spec.get("member") in (None, ""):
        raise InvalidInput("owner", f"the contact's field '{spec['from_field']}' is empty")
    name = f"fields.{spec['from_field']}" if spec.get("from_field") else "owner"
    return w.member(spec.get("member"), name)


def keep_deal(facts: Snapshot, name: str, properties: dict[str, Any]) -> None:
    """Bring a contact's deal facts up to date with a deal event recorded in this transaction
    (later conditions of the same tick see the deal as it now is)."""
    gone = {properties["deal_id"]} | ({UNSAVED} if name == "deal.created" else set())
    facts.deals[:] = [d for d in facts.deals if d.id not in gone]
    if name != "deal.deleted":
        minor = crm.to_minor(properties.get("value", 0))
        fact = DealFact(
            properties["deal_id"],
            str(properties.get("pipeline")),
            str(properties.get("stage")),
            str(properties.get("status")),
            minor,
        )
        facts.deals.append(fact)
        facts.deals.sort(key=lambda d: d.id)
