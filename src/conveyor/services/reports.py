"""Reports kept from the event log: a consumer (see rollups.py) folds message, automation and
conversion events into daily rollups in the transaction that moves its cursor, and the reports
read them back per automation, node, template, channel and period, the attribution model named."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.clock import Clock
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.reports import (
    METRICS,
    attribution_model,
    check_range,
    graph_order,
    money,
    period_of,
    rates,
)
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import parse_definition
from conveyor.services.conditions import ConditionContext
from conveyor.services.rollups import fold
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "reports"


class Reports:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    # --- the consumer ------------------------------------------------------------------------

    def on_events(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        fold(tx, ctx.workspace, rows)

    def fold_steps(self, limit: int = 5000, *, looked: bool = False) -> int:
        """Fold the next steps of the step log into the funnel; how many step ids that passed
        (0: caught up). Its own transaction, which moves its position: a killed process
        resumes exactly where it stopped. `looked`: the caller has just seen steps to fold."""
        if not looked:
            with self.store.peek() as tx:
                if not tx.reports.steps_behind():
                    return 0

        def work(tx: Tx) -> int:
            after = tx.reports.steps_position()
            if after is None:  # another process is folding them
                return 0
            return tx.reports.fold_steps(after, tx.steps_high_water(), limit) - after

        return self.store.transact(work, follow_log=True)

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
            funnel = tx.reports.funnel(workspace.id, key, span.first, span.last)
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
        removed = sorted(n for n in {*by_node, *reach} if n and n not in order)  # still counted
        for node in order + removed:
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
            # One read for both splits: (automation, channel) pairs are few.
            split = tx.reports.figures(
                workspace.id, span.first, span.last, by=("automation", "channel"), per_day=False
            )
        out = span.header(workspace, machine) | _summary(figures, span, machine)
        for i, (dimension, name) in enumerate(
            (("automation", "automations"), ("channel", "channels"))
        ):
            groups: dict[str, dict[str, int]] = defaultdict(_zeros)
            for f in split:
                if f.dims[i]:
                    groups[f.dims[i]][f.metric] += f.value
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
