"""Folding the event log into the reports' daily rollups: message, automation and conversion
events become counts per day and key, and each message's opens and clicks are remembered for
unique counts and attribution. Called by the reports consumer, in its cursor's transaction."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.reports import (
    AttributionModel,
    Touch,
    attribute,
    attribution_model,
    revenue_minor,
)
from conveyor.domain.workspaces import Workspace
from conveyor.store.records import ReportMessageRecord
from conveyor.store.store import Tx

SOURCES = ("email", "sms", "webhook", "site_message", "team")
# Message events that add one to the metric of the same name, whoever caused them.
PLAIN = {
    "sent": "sent",
    "failed": "failed",
    "delivered": "delivered",
    "complained": "complained",
    "unsubscribed": "unsubscribed",
}
RUNS = {"entered", "completed", "exited", "goal_reached"}
NO_KEY = ("", "", "", 0, "", "")  # automation, node, template, version, channel, campaign


@dataclass(slots=True)
class Facts:
    """What the consumer keeps of one message while it folds a batch (saved at its end)."""

    message_id: int
    workspace_id: int
    contact_id: int
    automation: str
    node: str
    template: str
    template_version: int
    channel: str
    campaign: str
    sent_at: datetime | None = None
    last_opened_at: datetime | None = None
    last_clicked_at: datetime | None = None
    opened: bool = False
    clicked: bool = False
    opened_any: bool = False
    clicked_any: bool = False

    @classmethod
    def of(cls, r: ReportMessageRecord) -> Facts:
        return cls(*(getattr(r, name) for name in r.__slots__))  # type: ignore[attr-defined]

    @classmethod
    def new(cls, message_id: int, workspace_id: int, contact_id: int, props: dict[str, Any]):  # type: ignore[no-untyped-def]
        version = props.get("template_version")
        return cls(
            message_id,
            workspace_id,
            contact_id,
            _text(props.get("automation"), 64),
            _text(props.get("node"), 64),
            _text(props.get("template"), 64),
            version if isinstance(version, int) and not isinstance(version, bool) else 0,
            _text(props.get("channel"), 16),
            _text(props.get("campaign"), 64),
        )

    def key(self) -> tuple[Any, ...]:
        return (
            self.automation,
            self.node,
            self.template,
            self.template_version,
            self.channel,
            self.campaign,
        )

    def row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]

    def touch(self) -> Touch:
        return Touch(self.message_id, self.sent_at, self.last_opened_at, self.last_clicked_at)


def _text(value: Any, size: int) -> str:
    return value[:size] if isinstance(value, str) else ""


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def fold(tx: Tx, workspace: Workspace, rows: list[Any]) -> None:
    """Fold one workspace's events (in log order) into its rollups and message facts."""
    zone = ZoneInfo(workspace.settings.get("timezone") or "UTC")
    model = attribution_model(workspace.settings)
    mine = [r for r in rows if isinstance(r.properties, dict)]
    ids = {
        r.properties["message"]
        for r in mine
        if r.kind == "system" and isinstance(r.properties.get("message"), int)
    }
    facts = {rec.message_id: Facts.of(rec) for rec in tx.reports.messages(ids)}
    conversions = [r for r in mine if r.name == model.event]
    if conversions:
        since = min(r.timestamp for r in conversions) - model.lookback
        contacts = {r.contact_id for r in conversions}
        for rec in tx.reports.touches(workspace.id, contacts, since):
            facts.setdefault(rec.message_id, Facts.of(rec))
    of_contact: dict[int, list[Facts]] = defaultdict(list)
    for f in facts.values():
        of_contact[f.contact_id].append(f)
    changed: set[int] = set()
    sums: dict[tuple[Any, ...], int] = defaultdict(int)
    days: dict[datetime, str] = {}

    def day_of(moment: datetime) -> str:
        found = days.get(moment)
        if found is None:
            found = days[moment] = moment.astimezone(zone).date().isoformat()
        return found

    for r in mine:
        props = r.properties
        if r.name == model.event:
            _convert(r, props, model, of_contact, sums, day_of(r.timestamp))
        if r.kind != "system" or "." not in r.name:
            continue
        source, action = r.name.split(".", 1)
        day = day_of(r.timestamp)
        if source == "automation":
            if action in RUNS and isinstance(props.get("automation"), str):
                node = _text(props.get("goal"), 64) if action == "goal_reached" else ""
                sums[(day, _text(props["automation"], 64), node, "", 0, "", "", action)] += 1
            continue
        if source not in SOURCES:
            continue
        message_id = props.get("message")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            if action == "unsubscribed":  # an SMS STOP names no message
                sums[(day, "", "", "", 0, source, "", "unsubscribed")] += 1
            continue
        f = facts.get(message_id)
        if f is None:
            f = facts[message_id] = Facts.new(message_id, workspace.id, r.contact_id, props)
            of_contact[f.contact_id].append(f)
        for metric in _message_metrics(f, action, props, r.timestamp):
            sums[(day, *f.key(), metric)] += 1
        changed.add(message_id)
    tx.reports.save_messages([facts[i].row() for i in changed])
    tx.reports.add(
        [
            {
                "workspace_id": workspace.id,
                "day": k[0],
                "automation": k[1],
                "node": k[2],
                "template": k[3],
                "template_version": k[4],
                "channel": k[5],
                "campaign": k[6],
                "metric": k[7],
                "value": v,
            }
            for k, v in sums.items()
        ]
    )


def _message_metrics(f: Facts, action: str, props: dict[str, Any], at: datetime) -> list[str]:
    """The metrics one event about a message adds to, updating what is kept of the message."""
    if action in PLAIN:
        if action == "sent":
            f.sent_at = at
        return [PLAIN[action]]
    if action == "bounced":
        return ["bounced_soft" if props.get("type") == "soft" else "bounced_hard"]
    if action in ("opened", "shown"):
        out = []
        if not f.opened_any:
            f.opened_any = True
            out.append("opens_unique_any")
        if props.get("machine") or props.get("proxy"):
            return [*out, "opens_machine"]
        f.last_opened_at = _later(f.last_opened_at, at)
        if not f.opened:
            f.opened = True
            out.append("opens_unique")
        return [*out, "opens"]
    if action == "clicked":
        out = []
        if not f.clicked_any:
            f.clicked_any = True
            out.append("clicks_unique_any")
        if props.get("machine"):
            return [*out, "clicks_bot"]
        f.last_clicked_at = _later(f.last_clicked_at, at)
        if not f.clicked:
            f.clicked = True
            out.append("clicks_unique")
        return [*out, "clicks"]
    return []


def _convert(
    r: Any,
    props: dict[str, Any],
    model: AttributionModel,
    of_contact: dict[int, list[Facts]],
    sums: dict[tuple[Any, ...], int],
    day: str,
) -> None:
    amount = revenue_minor(props, model)
    sums[(day, *NO_KEY, "conversions_all")] += 1
    sums[(day, *NO_KEY, "revenue_all")] += amount
    touches = of_contact.get(r.contact_id, [])
    credited = attribute((f.touch() for f in touches), r.timestamp, model)
    if credited is None:
        return
    f = next(f for f in touches if f.message_id == credited)
    sums[(day, *f.key(), "conversions")] += 1
    sums[(day, *f.key(), "revenue")] += amount
