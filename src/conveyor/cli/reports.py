"""`conveyor report automation|template|overview|attribution`: KPIs as tables in the terminal.

The helpers (opening the app, failing with a message, the workspace option) are main's; they
are imported when a command runs, as main registers this app at its end."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.domain.errors import ConveyorError, InvalidInput

report_app = typer.Typer(
    help="Reports: KPIs, funnels and attributed revenue.", no_args_is_help=True
)

WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]
FromOpt = Annotated[
    str | None, typer.Option("--from", help="first day, YYYY-MM-DD (default: 29 days before --to)")
]
ToOpt = Annotated[str | None, typer.Option("--to", help="last day, YYYY-MM-DD (default: today)")]
ByOpt = Annotated[str, typer.Option("--by", help="day, week or month")]
MachineOpt = Annotated[
    bool, typer.Option("--machine", help="count machine opens and bot clicks in the rates")
]
COLUMNS = (
    ("sent", "sent"),
    ("delivered", "deliv."),
    ("bounced_hard", "hard b."),
    ("opens_unique", "opened"),
    ("opens_machine", "mach. opens"),
    ("clicks_unique", "clicked"),
    ("clicks_bot", "bot clicks"),
    ("unsubscribed", "unsub."),
    ("open_rate", "open %"),
    ("click_rate", "click %"),
    ("click_to_open_rate", "CTOR"),
    ("conversions", "conv."),
    ("revenue", "revenue"),
)


def _day(raw: str | None, field: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(field, f"'{raw}' is not a date like 2026-12-01") from None


def _do(workspace: str | None, work: Any) -> Any:
    from conveyor.cli import main as cli

    conveyor = cli._open()
    try:
        return work(conveyor, cli._workspace(conveyor, workspace))
    except ConveyorError as exc:
        field = getattr(exc, "field", None)
        cli._fail(f"{field + ': ' if field else ''}{exc.detail}")
    finally:
        conveyor.close()


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "—"
    if key.endswith("_rate"):
        return f"{value * 100:.1f}%"
    if key == "revenue":
        return f"{value:,.2f}"
    return f"{value:,}"


def _table(title: str, first: str, rows: list[dict[str, Any]], extra=()) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=title, title_justify="left")
    table.add_column(first)
    for _key, label in (*extra, *COLUMNS):
        table.add_column(label, justify="right")
    for row in rows:
        cells = [_cell(row.get(key), key) for key, _label in (*extra, *COLUMNS)]
        table.add_row(str(row.get(first.lower(), "")), *cells)
    return table


def _print(report: dict[str, Any], *tables: Table) -> None:
    from conveyor.cli.main import out

    out.print(
        f"{report['from']} → {report['to']} ({report['timezone']}), by {report['granularity']}. "
        f"Attribution: {report['attribution']['name']} of {report['attribution']['event']}."
        + ("" if report["machine_included"] else " Machine opens and bot clicks not in rates."),
        highlight=False,
    )
    for table in tables:
        out.print(table)


@report_app.command("automation")
def report_automation(
    key: str,
    start: FromOpt = None,
    end: ToOpt = None,
    by: ByOpt = "day",
    machine: MachineOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """An automation's figures per period, per node (graph order) and its funnel."""
    report = _do(
        workspace,
        lambda c, ws: c.reports.automation(
            ws, key, _day(start, "from"), _day(end, "to"), by, machine=machine
        ),
    )
    t = report["totals"]
    runs = (
        f"entered {t['entered']:,} · active now {report['active']:,} · goal reached "
        f"{t['goal_reached']:,} · completed {t['completed']:,} · exited {t['exited']:,}"
    )
    periods = [{"period": "total", **t}, *report["series"]]
    nodes = report["nodes"]
    for n in nodes:
        n["node"] = f"{n['node']} ({n['type']})"
    _print(
        report,
        _table(f"{key}: {runs}", "Period", periods),
        _table(
            "Nodes and funnel",
            "Node",
            nodes,
            extra=(
                ("reached", "reached"),
                ("converted_after", "conv. after"),
                ("active", "active"),
            ),
        ),  # fmt: skip
    )


@report_app.command("template")
def report_template(
    key: str,
    start: FromOpt = None,
    end: ToOpt = None,
    by: ByOpt = "day",
    machine: MachineOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """A template's figures per period and per version."""
    report = _do(
        workspace,
        lambda c, ws: c.reports.template(
            ws, key, _day(start, "from"), _day(end, "to"), by, machine=machine
        ),
    )
    _print(
        report,
        _table(key, "Period", [{"period": "total", **report["totals"]}, *report["series"]]),
        _table("Versions", "Version", report["versions"]),
    )


@report_app.command("overview")
def report_overview(
    start: FromOpt = None,
    end: ToOpt = None,
    by: ByOpt = "day",
    machine: MachineOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """The workspace: every message and conversion, per period, automation and channel."""
    report = _do(
        workspace,
        lambda c, ws: c.reports.overview(
            ws, _day(start, "from"), _day(end, "to"), by, machine=machine
        ),
    )
    t = report["totals"]
    title = (
        f"Conversions {t['conversions_all']:,} ({t['revenue_all']:,.2f}), of which attributed "
        f"to messages {t['conversions']:,} ({t['revenue']:,.2f})"
    )
    _print(
        report,
        _table(title, "Period", [{"period": "total", **t}, *report["series"]]),
        _table("Automations", "Automation", report["automations"]),
        _table("Channels", "Channel", report["channels"]),
    )


@report_app.command("attribution")
def report_attribution(
    event: Annotated[str | None, typer.Option(help="the conversion event")] = None,
    revenue_property: Annotated[
        list[str] | None, typer.Option(help="where the revenue is; repeat, first found wins")
    ] = None,
    click_days: Annotated[int | None, typer.Option(help="window of the last click")] = None,
    open_days: Annotated[
        int | None, typer.Option(help="window of the last human open or receipt")
    ] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Show the attribution model, or change it with any of the options."""
    from conveyor.cli.main import out
    from conveyor.domain.reports import attribution_model

    given: dict[str, Any] = {
        "event": event,
        "revenue_properties": revenue_property,
        "click_days": click_days,
        "open_days": open_days,
    }
    given = {k: v for k, v in given.items() if v is not None}

    def work(c: Any, ws: Any) -> Any:
        from conveyor.domain.reports import check_attribution

        if given:
            current = dict(ws.settings.get("attribution") or {})
            ws = c.workspaces.update_settings(
                ws, {"attribution": check_attribution(current | given)}
            )
        return attribution_model(ws.settings)

    model = _do(workspace, work)
    out.print(
        f"{model.name}; conversion event {model.event}, revenue from "
        f"{', '.join(model.revenue_properties)}",
        highlight=False,
    )
