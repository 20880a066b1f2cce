"""Automations, the pure core: the model, reading definitions, the node registry, triggers,
entry decisions and advancing runs. No I/O and no clock: the shell hands in `now`."""

from conveyor.domain.automations.effects import (
    ContactChange,
    CrmChange,
    Effect,
    EndOther,
    Enroll,
    Record,
    Send,
)
from conveyor.domain.automations.model import (
    END,
    Automation,
    DateTrigger,
    EntryRules,
    Node,
    Priority,
    Trigger,
    webhook_event,
)
from conveyor.domain.automations.nodes import REGISTRY, SEND_TYPES
from conveyor.domain.automations.parse import AutomationParser

__all__ = [
    "END",
    "REGISTRY",
    "SEND_TYPES",
    "Automation",
    "AutomationParser",
    "ContactChange",
    "CrmChange",
    "DateTrigger",
    "Effect",
    "EndOther",
    "Enroll",
    "EntryRules",
    "Node",
    "Priority",
    "Record",
    "Send",
    "Trigger",
    "webhook_event",
]
