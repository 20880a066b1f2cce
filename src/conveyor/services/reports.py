"""Reports kept from the event log: a consumer folds message, automation and conversion events
into daily rollups (in the transaction that moves its cursor), and the reports read them back
per automation, node, template, channel and period, with the attribution model named."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.clock import Clock
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.reports import (
    METRICS,
    AttributionModel,
    Touch,
    attribute,
    attribution_model,
    check_range,
    graph_order,
    money,
    period_of,
    rates,
    revenue_minor,
)
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import parse_definition
from conveyor.services.conditions import ConditionContext
from conveyor.store.records import ReportMessageRecord
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "reports"
SOURCES = ("email", "sms", "webhook", "site_message", "team")
# The action of a message event → (metric for people, metric for machines) or a plain metric.
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


class Reports:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- the consumer ------------------------------------------------------------------------

    def on_events(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        fold(tx, ctx.workspace, rows)

    # --- the reports -------------------------------------------------------------------------

    def automation(
        self,
        workspace: Workspace,
        key: str,
        start: date | None = None,
        end: date | None = None,
        granularity: str = "day",
        *,
        machine: bool = False,
    ) -> dict[str, Any]:
        span = self._span(workspace, start, end, granularity)
        with self.store.read() as tx:
            row = tx.automations.by_key(workspace.id, key)
            if row is None:
                raise NotFound(f"no automation '{key}' in this workspace")
            where = {"automation": key}
            figures = tx.reports.figures(workspace.id, span.first, span.last, where=where)
            per_node = tx.reports.figures(
                workspace.id, span.first, span.last, by=("node",), where=where, per_day=False
            )
            active = dict(tx.automations.node_counts(row.id))
            funnel = tx.reports.funnel(row.id, span.start_utc, span.end_utc)
            definition = tx.automations.definition(row.id, row.version)
            try:
                parsed = parse_definition(tx, workspace, definition, key=key)
                targets = {n.id: n.targets() for n in parsed.nodes.values()}
                order = graph_order(parsed.start, targets)
                types = {n.id: n.type for n in parsed.nodes.values()}
            except InvalidInput:  # a field or list it names was deleted since: file order
                raw = [n for n in (definition or {}).get("nodes") or [] if isinstance(n, dict)]
                order = [str(n.get("id")) for n in raw]
                types = {str(n.get("id")): str(n.get("type")) for n in raw}
        by_node: dict[str, dict[str, int]] = defaultdict(_zeros)
        for f in per_node:
            by_node[f.dims[0]][f.metric] += f.value
        reach = {f.node: f for f in funnel}
        nodes = []
        for node in order + sorted(n for n in by_node if n and n not in order):
            counts = by_node.get(node, _zeros())
            nodes.append(
                {
                    "node": node,
                    "type": types.get(node, "removed"),
                    "active": active.get(node, 0),
                    "reached": reach[node].reached if node in reach else 0,
                    "converted_after": reach[node].converted if node in reach else 0,
                    **_shown(counts, machine),
                }
            )
        out = span.header(workspace, machine) | {
            "automation": key,
            "active": sum(active.values()),
            **_summary(figures, span, machine),
        }
        out["totals"]["conversions_with_goals"] = (
            out["totals"]["conversions"] + out["totals"]["goal_reached"]
        )
        out["nodes"] = nodes
        out["funnel"] = [
            {k: n[k] for k in ("node", "type", "reached", "converted_after")}
            for n in nodes
            if n["type"] != "removed" or n["reached"]
        ]
        return out

    def template(
        self,
        workspace: Workspace,
        key: str,
        start: date | None = None,
        end: date | None = None,
        granularity: str = "day",
        *,
        machine: bool = False,
    ) -> dict[str, Any]:
        span = self._span(workspace, start, end, granularity)
        with self.store.read() as tx:
            if tx.templates.by_key(workspace.id, key) is None:
                raise NotFound(f"no template '{key}' in this workspace")
            where = {"template": key}
            figures = tx.reports.figures(workspace.id, span.first, span.last, where=where)
            per_version = tx.reports.figures(
                workspace.id,
                span.first,
                span.last,
                by=("template_version",),
                where=where,
                per_day=False,
            )
        versions: dict[int, dict[str, int]] = defaultdict(_zeros)
        for f in per_version:
            versions[f.dims[0]][f.metric] += f.value
        out = span.header(workspace, machine) | {
            "template": key,
            **_summary(figures, span, machine),
        }
        out["versions"] = [{"version": v, **_shown(versions[v], machine)} for v in sorted(versions)]
        return out

    def overview(
        self,
        workspace: Workspace,
        start: date | None = None,
        end: date | None = None,
        granularity: str = "day",
        *,
        machine: bool = False,
    ) -> dict[str, Any]:
        span = self._span(workspace, start, end, granularity)
        with self.store.read() as tx:
            figures = tx.reports.figures(workspace.id, span.first, span.last)
            split = {
                name: tx.reports.figures(
                    workspace.id, span.first, span.last, by=(name,), per_day=False
                )
                for name in ("automation", "channel")
            }
        out = span.header(workspace, machine) | _summary(figures, span, machine)
        for dimension, name in (("automation", "automations"), ("channel", "channels")):
            groups: dict[str, dict[str, int]] = defaultdict(_zeros)
            for f in split[dimension]:
                if f.dims[0]:
                    groups[f.dims[0]][f.metric] += f.value
            out[name] = [{dimension: k, **_shown(groups[k], machine)} for k in sorted(groups)]
        totals = out["totals"]
        totals["unattributed_conversions"] = totals["conversions_all"] - totals["conversions"]
        return out

    def _span(
        self, workspace: Workspace, start: date | None, end: date | None, granularity: str
    ) -> Span:
        zone = ZoneInfo(workspace.settings.get("timezone") or "UTC")
        today = self.clock.now().astimezone(zone).date()
        end = end or today
        start = start or (end - timedelta(days=29))
        check_range(start, end, granularity)
        return Span(start, end, granularity, zone)


@dataclass(frozen=True)
class Span:
    start: date
    end: date
    granularity: str
    zone: ZoneInfo

    @property
    def first(self) -> str:
        return self.start.isoformat()

    @property
    def last(self) -> str:
        return self.end.isoformat()

    @property
    def start_utc(self) -> datetime:
        return datetime.combine(self.start, time(), self.zone)

    @property
    def end_utc(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time(), self.zone)

    def header(self, workspace: Workspace, machine: bool) -> dict[str, Any]:
        return {
            "from": self.first,
            "to": self.last,
            "timezone": self.zone.key,
            "granularity": self.granularity,
            "attribution": attribution_model(workspace.settings).as_dict(),
            "machine_included": machine,
        }


def _zeros() -> dict[str, int]:
    return dict.fromkeys(METRICS, 0)


def _shown(counts: dict[str, int], machine: bool) -> dict[str, Any]:
    """Figures as a report shows them: money in major units, then the rates."""
    out: dict[str, Any] = dict(counts)
    out["revenue"] = money(counts["revenue"])
    out["revenue_all"] = money(counts["revenue_all"])
    return out | rates(counts, machine=machine)


def _summary(figures: list[Any], span: Span, machine: bool) -> dict[str, Any]:
    totals = _zeros()
    periods: dict[date, dict[str, int]] = defaultdict(_zeros)
    for f in figures:
        totals[f.metric] += f.value
        periods[period_of(date.fromisoformat(f.day), span.granularity)][f.metric] += f.value
    series = []
    moment = period_of(span.start, span.granularity)
    while moment <= span.end:  # every period, empty ones too: charts need no gaps filled
        series.append({"period": moment.isoformat(), **_shown(periods[moment], machine)})
        moment = _next(moment, span.granularity)
    return {"totals": _shown(totals, machine), "series": series}


def _next(moment: date, granularity: str) -> date:
    if granularity == "week":
        return moment + timedelta(days=7)
    if granularity == "month":
        return (moment.replace(day=28) + timedelta(days=4)).replace(day=1)
    return moment + timedelta(days=1)


# --- folding events into rollups --------------------------------------------------------------


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
