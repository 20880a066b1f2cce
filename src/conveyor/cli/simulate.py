"""`conveyor automation simulate|forecast|try`: a simulation's report as rich tables (from the
same dictionary the API returns), and two backtests side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from conveyor.domain.errors import ConveyorError

AutomationFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]
WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]
AsJson = Annotated[bool, typer.Option("--json", help="the report as JSON (as the API gives it)")]


def _cli() -> Any:
    from conveyor.cli import main  # the entrypoint's helpers (it imports this module)

    return main


def simulate(
    file: AutomationFile,
    since: Annotated[str, typer.Option("--from", help="'30d', a date or a moment")] = "30d",
    until: Annotated[str | None, typer.Option("--to", help="default: now")] = None,
    segment: Annotated[str | None, typer.Option(help="only its members at the start")] = None,
    sample: Annotated[int | None, typer.Option(help="only this many contacts")] = None,
    contact: Annotated[int | None, typer.Option(help="show this contact's path")] = None,
    with_active: Annotated[bool, typer.Option(help="run the active automations too")] = False,
    compare: Annotated[
        Path | None, typer.Option(help="another version of the file, side by side")
    ] = None,
    workspace: WorkspaceOpt = None,
    as_json: AsJson = False,
) -> None:
    """Backtest the automation on the workspace's history: writes nothing, sends nothing."""
    from conveyor.services.simulate import Scope
    from conveyor.services.simulate.inputs import moment

    cli = _cli()
    conveyor = cli._open()
    try:
        ws = cli._workspace(conveyor, workspace)
        now = conveyor.clock.now()
        start, end = moment(since, now, "--from"), moment(until, now, "--to", default=now)
        watch = frozenset({contact}) if contact else frozenset()
        reports = []
        for path in [file] + ([compare] if compare else []):
            scope = Scope(cli._load(path), with_active, segment, sample, watch)
            reports.append(conveyor.simulator.backtest(ws, scope, start, end).as_dict(contact))
    except ConveyorError as exc:
        cli._fail(f"{file}: {exc.detail}")
    key = cli._load(file)["key"]
    if as_json or cli.out.json:
        cli.out.print_json(data=reports[0] if not compare else reports)
    elif compare:
        side_by_side(cli.out, key, reports[0], reports[1], [file.name, compare.name])
    else:
        render(cli.out, reports[0], key)


def forecast(
    file: Annotated[Path | None, typer.Argument(help="a draft to add (optional)")] = None,
    days: Annotated[int, typer.Option(help="how far ahead")] = 7,
    workspace: WorkspaceOpt = None,
    as_json: AsJson = False,
) -> None:
    """Message pressure over the next days across the active automations (and a draft)."""
    from conveyor.services.simulate import Scope

    cli = _cli()
    conveyor = cli._open()
    try:
        draft = cli._load(file) if file else None
        report = conveyor.simulator.forecast(
            cli._workspace(conveyor, workspace), Scope(draft), days
        )
    except ConveyorError as exc:
        cli._fail(exc.detail)
    data = report.as_dict()
    if as_json or cli.out.json:
        cli.out.print_json(data=data)
        return
    render(cli.out, data, None)


def try_contact(
    file: AutomationFile,
    contact: Annotated[int | None, typer.Option(help="a contact id")] = None,
    made_up: Annotated[
        str | None,
        typer.Option("--as", help='a made-up contact: \'{"email": "a@b.c", "tags": ["vip"]}\''),
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option(help="'email.opened@2 days' makes it happen then (repeatable)"),
    ] = None,
    days: Annotated[int, typer.Option(help="how long to follow it")] = 14,
    workspace: WorkspaceOpt = None,
    as_json: AsJson = False,
) -> None:
    """Walk one contact through the automation, step by step with the reasons."""
    from conveyor.services.simulate.inputs import SYNTHETIC_ID, injected

    cli = _cli()
    if (contact is None) == (made_up is None):
        cli._fail("give --contact ID or --as '{...}' (one of them)")
    who: int | dict[str, Any] = contact if contact is not None else {}
    if made_up is not None:
        try:
            who = json.loads(made_up)
        except ValueError as exc:
            cli._fail(f"--as: not JSON ({exc})")
    conveyor = cli._open()
    try:
        raw = []
        for item in event or []:
            name, _, at = item.partition("@")
            raw.append({"event": name, "at": at or "now"})
        report = conveyor.simulator.try_contact(
            cli._workspace(conveyor, workspace), cli._load(file), who, injected(raw), days
        )
    except ConveyorError as exc:
        cli._fail(f"{file}: {exc.detail}")
    data = report.as_dict(contact if contact is not None else SYNTHETIC_ID)
    if as_json or cli.out.json:
        cli.out.print_json(data=data)
        return
    path(cli.out, data["contact"])


# --- rendering ---------------------------------------------------------------------------------


def render(out: Console, report: dict[str, Any], focus: str | None) -> None:
    period = report["period"]
    out.print(
        f"[bold]Simulated[/bold] {period['from'][:16]} → {period['to'][:16]}: "
        f"{report['events']} events replayed, {report['contacts']} contacts. "
        "Nothing was written or sent.",
        highlight=False,
    )
    for note in report["notes"]:
        out.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    automations = report["automations"]
    keys = [focus] if focus in automations else sorted(automations)
    for key in keys:
        _automation(out, key, automations[key])
    _distribution(out, "Messages sent per contact", report["messages_per_contact"])
    if len(keys) > 1 or not focus:
        _distribution(out, "Messages per contact per week", report["messages_per_contact_week"])
        if report["capped"]:
            table = Table("cap", "contacts held back", title="Caps hit")
            for rule, n in report["capped"].items():
                table.add_row(rule, str(n))
            out.print(table)
        if report["collisions"]:
            table = Table("held back", "by sends of", "messages", title="Collisions")
            for c in report["collisions"][:10]:
                table.add_row(c["held_back"], c["by"], str(c["messages"]))
            out.print(table)
    if "contact" in report:
        path(out, report["contact"])


def _automation(out: Console, key: str, t: dict[str, Any]) -> None:
    conversion = f"{t['conversion']:.1%}" if t["conversion"] is not None else "—"
    out.print(
        f"\n[bold]{key}[/bold]: {t['entries']} entries ({t['contacts']} contacts), "
        f"goals {sum(t['goals'].values())} ({conversion}), outcomes {_pairs(t['outcomes'])}",
        highlight=False,
    )
    days = sorted(set(t["entries_per_day"]) | set(t["messages_per_day"]))
    channels = sorted({ch for d in t["messages_per_day"].values() for ch in d})
    table = Table("day", "entries", *channels, title="Per day")
    for day in days:
        per = t["messages_per_day"].get(day, {})
        table.add_row(
            day, str(t["entries_per_day"].get(day, 0)), *(str(per.get(ch, 0)) for ch in channels)
        )
    out.print(table)
    nodes = Table("node", "outcomes", title="Per node")
    for node, outcomes in t["nodes"].items():
        nodes.add_row(node, _pairs(outcomes))
    out.print(nodes)
    m = t["messages"]
    out.print(
        f"messages: {m['sent']} sent, {m['deferred']} deferred, {m['skipped']} skipped by the "
        f"send policy; not entered: {_pairs(t['not_entered']) or 'none'}",
        highlight=False,
    )
    if t["policy"]:
        table = Table(
            "action",
            "rule",
            "decisions",
            title="Send policy (a message deferred twice counts twice)",
        )
        for p in t["policy"]:
            table.add_row(p["action"], p["rule"], str(p["decisions"]))
        out.print(table)


def _distribution(out: Console, title: str, buckets: dict[str, int]) -> None:
    table = Table(*buckets.keys(), title=title)
    table.add_row(*(str(n) for n in buckets.values()))
    out.print(table)


def path(out: Console, contact: dict[str, Any]) -> None:
    if not contact["steps"]:
        out.print(
            f"contact {contact['id']}: no steps in the simulation (nothing it did or had "
            "done to it triggered the automation)",
            highlight=False,
        )
        return
    table = Table("at", "automation", "node", "outcome", "why", title=f"Contact {contact['id']}")
    for s in contact["steps"]:
        why = s["reason"].get("why") if isinstance(s["reason"], dict) else s["reason"]
        table.add_row(s["at"][:16], s["automation"], s["node"], s["outcome"], str(why or ""))
    out.print(table)
    if contact["messages"]:
        table = Table("created", "node", "template", "status", "sent at", title="Its messages")
        for m in contact["messages"]:
            table.add_row(
                m["created_at"][:16], m["node"], m["template"] or "", m["status"],
                (m["sent_at"] or "")[:16],
            )  # fmt: skip
        out.print(table)


def side_by_side(
    out: Console, key: str, a: dict[str, Any], b: dict[str, Any], names: list[str]
) -> None:
    """Two versions' backtests over the same history: what changes."""
    ta, tb = a["automations"].get(key, {}), b["automations"].get(key, {})
    table = Table("", *names, "change", title=f"{key}: two versions on the same history")

    def row(label: str, x: Any, y: Any) -> None:
        diff = f"{y - x:+}" if isinstance(x, int | float) and isinstance(y, int | float) else ""
        table.add_row(label, str(x), str(y), diff)

    row("entries", ta.get("entries", 0), tb.get("entries", 0))
    row("goals", sum(ta.get("goals", {}).values()), sum(tb.get("goals", {}).values()))
    for field in ("sent", "deferred", "skipped"):
        row(f"messages {field}", ta["messages"][field], tb["messages"][field])
    for outcome in sorted(set(ta.get("outcomes", {})) | set(tb.get("outcomes", {}))):
        row(f"runs {outcome}", ta["outcomes"].get(outcome, 0), tb["outcomes"].get(outcome, 0))
    out.print(table)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
