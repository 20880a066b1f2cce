"""Messages: email, SMS, site message, team notification, webhook call — each an outbox row.

Marketing from an automation that a list subscription started is sent for that list: a contact
who has left the list gets no further marketing from it (delivery skips the message, and the
timeline says why), without extra configuration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from conveyor.domain.automations.effects import Send
from conveyor.domain.automations.model import Node
from conveyor.domain.automations.nodes.base import NodeType, Result, RunView
from conveyor.domain.conditions import Condition
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator, Snapshot

COMMON = {
    "template": "text!",
    "class": "choice",
    "allow_repeat": "any",  # the same template to the same contact within repeat_within
    "on_cap": "choice",  # defer (default) or skip when a frequency cap holds it back
    "send_at": "at",  # at this local time of day (the contact's timezone)
    "list": "text",  # sent for this list: only its subscribers; unsubscribing leaves it
}
CHOICES = {"class": ("marketing", "transactional"), "on_cap": ("defer", "skip")}
TRANSACTIONAL_BY_DEFAULT = ("notify_team", "webhook")


def _send(node: Node, run: RunView, snap: Snapshot, now: datetime, ev: Evaluator) -> Result:
    c = node.config
    default = "transactional" if node.type in TRANSACTIONAL_BY_DEFAULT else "marketing"
    message_class = c.get("class", default)
    config = {k: v for k, v in c.items() if k not in ("template", "class", "name")}
    channel = REGISTRY_CHANNELS[node.type]
    what = c.get("template") or c.get("url")
    if message_class == "marketing" and run.list and "list" not in config:
        # Delivery skips it for whoever has left the list. (Not `list`, which would also make
        # its unsubscribe link leave only that list rather than all marketing email.)
        config["trigger_list"] = run.list
    send = Send(channel, c.get("template"), message_class, config)
    return Result("next", "queued", f"{channel} {what} queued", next=node.next, effects=(send,))


def _check_team(config: dict[str, Any], condition: Condition | None, path: str) -> None:
    if len(config.get("to", [])) > 5:
        raise InvalidInput(f"{path}.to", "at most five addresses")


TYPES = (
    NodeType("send_email", "send", dict(COMMON), _send, CHOICES, channel="email"),
    NodeType("send_sms", "send", dict(COMMON), _send, CHOICES, channel="sms"),
    NodeType("send_site_message", "send", dict(COMMON), _send, CHOICES, channel="site_message"),
    # Team notifications have a built-in text when no template is named.
    NodeType(
        "notify_team",
        "send",
        {**COMMON, "template": "text", "to": "list!"},
        _send,
        CHOICES,
        check=_check_team,
        channel="team",
    ),
    NodeType(
        "webhook",
        "send",
        {**COMMON, "template": "text", "url": "text!", "method": "text"},
        _send,
        CHOICES,
        channel="webhook",
    ),
)
REGISTRY_CHANNELS = {t.name: t.channel for t in TYPES}
