"""What a step does besides moving the run: frozen effects the shell carries out.

Internal effects (ContactChange, CrmChange, Enroll, EndOther, Record) commit with the step;
Send goes to the outbox, delivered later with an idempotency key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ContactChange:
    """An internal effect on the contact: applied atomically with the step."""

    action: str  # add_tag, set_field, subscribe, adjust_score, … (the action node types)
    target: str | None  # tag, field or list
    value: Any = None


@dataclass(frozen=True)
class Send:
    """An external effect: one outbox row, delivered later by the channels."""

    channel: str
    template: str | None
    message_class: str
    config: dict[str, Any]


@dataclass(frozen=True)
class Enroll:
    """Enroll the contact in another automation (its entry rules still apply)."""

    automation: str


@dataclass(frozen=True)
class EndOther:
    """End the contact's run in another automation."""

    automation: str


@dataclass(frozen=True)
class Record:
    """An event for the contact's log: automation.goal_reached, automation.completed, …"""

    name: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class CrmChange:
    """An internal effect on the sales side (a deal, a task, a note, an owner): applied
    atomically with the step, like a ContactChange.

    `values` are the node's settings with the trigger's `{{ event.x }}` filled in; who a
    member is (an email, a field's value, a role's next in rotation) the shell resolves."""

    action: str  # create_deal, update_deal, assign_owner, create_task, add_note
    values: dict[str, Any]


Effect = ContactChange | CrmChange | Send | Enroll | EndOther | Record
