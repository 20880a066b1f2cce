"""Actions on the contact: tags, fields, list subscriptions, lead score.

The handler turns a node into a ContactChange; `apply_change` is what that change does to the
contact's facts (so later conditions in the same run see it), or why it cannot be done. The
shell persists the same change; the simulator stops at the facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from conveyor.domain.automations.effects import ContactChange
from conveyor.domain.automations.model import Node
from conveyor.domain.automations.nodes.base import NodeType, Result, RunView
from conveyor.domain.conditions import Condition
from conveyor.domain.contacts import SubscriptionStatus
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator, Snapshot, lookup
from conveyor.domain.fields import STANDARD_FIELDS, FieldDefinition, coerce, normalize_standard

_TEMPLATE = re.compile(r"\{\{\s*event\.([A-Za-z0-9_.\-]+)\s*\}\}")
SCORE_RANGE = range(-(2**31), 2**31)


@dataclass(frozen=True)
class ContactRules:
    """What changing a contact must respect: its workspace's fields and lists."""

    fields: dict[str, FieldDefinition] = field(default_factory=dict)
    double_opt_in: dict[str, bool] = field(default_factory=dict)  # list key → needs confirming
    default_country: str | None = None


def render_value(value: Any, trigger: dict[str, Any]) -> Any:
    """`{{ event.total }}` is the trigger event's property (typed, when it is the whole value)."""
    if not isinstance(value, str):
        return value
    whole = _TEMPLATE.fullmatch(value.strip())
    if whole:
        return lookup(trigger, tuple(whole.group(1).split(".")))[1]

    def sub(match: re.Match[str]) -> str:
        found, got = lookup(trigger, tuple(match.group(1).split(".")))
        return "" if not found or got is None else str(got)

    return _TEMPLATE.sub(sub, value)


def _action(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    c = node.config
    subject = c.get("tag") or c.get("field") or c.get("list") or c.get("score")
    if subject == "score" and node.type == "adjust_score":
        subject = None  # the contact's own score, as without a name
    if node.type == "adjust_score":
        value = c["by"]
    elif node.type == "increment_field":
        value = c.get("by", 1)
    else:
        value = render_value(c.get("value"), run.trigger)
    change = ContactChange(node.type, subject, value)
    shown = " ".join(str(p) for p in (node.type, subject, value) if p not in (None, ""))
    return Result("next", "done", shown, next=node.next, effects=(change,))


def apply_change(change: ContactChange, snap: Snapshot, rules: ContactRules) -> None:
    """Bring the contact's facts up to date with `change`; InvalidInput when it cannot apply
    (an undeclared field, a value of the wrong type, an unknown list)."""
    action, subject = change.action, change.target
    if action == "add_tag":
        snap.tags.add(subject)  # type: ignore[arg-type]
    elif action == "remove_tag":
        snap.tags.discard(subject)  # type: ignore[arg-type]
    elif action in ("set_field", "clear_field", "increment_field"):
        assert subject is not None
        value = None if action == "clear_field" else change.value
        if action == "increment_field":
            value = (snap.fields.get(subject) or 0) + change.value
        if subject in STANDARD_FIELDS:
            snap.standard[subject] = normalize_standard(subject, value, rules.default_country)
            return
        definition = rules.fields.get(subject)
        if definition is None:
            raise InvalidInput(
                subject, "is not a declared custom field; declare it with POST /fields"
            )
        stored = coerce(definition, value)
        if stored is None:
            snap.fields.pop(subject, None)
        else:
            snap.fields[subject] = stored
    elif action in ("subscribe", "unsubscribe"):
        if subject not in rules.double_opt_in:
            raise InvalidInput(subject or "list", f"no list '{subject}' in this workspace")
        status = SubscriptionStatus.UNSUBSCRIBED
        if action == "subscribe":
            confirming = rules.double_opt_in[subject] and snap.lists.get(subject) != "subscribed"
            status = SubscriptionStatus.UNCONFIRMED if confirming else SubscriptionStatus.SUBSCRIBED
        snap.lists[subject] = str(status)  # type: ignore[index]
    elif action == "adjust_score" and subject is not None:
        # A named score: the scoring model's points, applied by the scoring consumer from the
        # `score.adjusted` event this step records (conditions later in the run see the old value).
        return
    elif action == "adjust_score":
        score = snap.score + int(change.value)
        if score not in SCORE_RANGE:
            raise InvalidInput("score", "a lead score is between -2147483648 and 2147483647")
        snap.score = score


def _check_value(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    if "value" not in config and "by" not in config:
        raise InvalidInput(f"{path}.value", "this node needs a value")


TYPES = (
    NodeType("add_tag", "action", {"tag": "text!"}, _action),
    NodeType("remove_tag", "action", {"tag": "text!"}, _action),
    NodeType(
        "set_field", "action", {"field": "text!", "value": "any"}, _action, check=_check_value
    ),
    NodeType("clear_field", "action", {"field": "text!"}, _action),
    NodeType(
        "increment_field",
        "action",
        {"field": "text!", "by": "number"},
        _action,
        check=_check_value,
    ),
    NodeType("subscribe", "action", {"list": "text!"}, _action),
    NodeType("unsubscribe", "action", {"list": "text!"}, _action),
    NodeType("adjust_score", "action", {"by": "number!", "score": "text"}, _action),
)
