"""`conveyor experiments show KEY [--check]`: an automation's split tests and their decisions
(main's helpers are imported when a command runs, as main registers this app)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.domain.errors import ConveyorError

app = typer.Typer(help="Split tests: winners picked by a sequential test.", no_args_is_help=True)
WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]


@app.command("show")
def show(
    key: Annotated[str, typer.Argument(help="the automation's key")],
    check: Annotated[bool, typer.Option("--check", help="decide running tests now")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Each split test of the automation: status, winner, and per path the counts and rate."""
    from conveyor.cli import main as cli

    conveyor = cli._open()
    try:
        ws = cli._workspace(conveyor, workspace)
        items = conveyor.experiments.of_automation(ws, key)
        if check:
            conveyor.experiments.check(ws, key)
            items = conveyor.experiments.of_automation(ws, key)
    except ConveyorError as exc:
        cli._fail(exc.detail)
    finally:
        conveyor.close()
    for item in items:
        decision: dict[str, Any] = item.get("decision") or {}
        cli.out.print(
            f"{key} / {item['node']}: {item['status']}"
            + (f", winner {item['winner']}" if item.get("winner") else "")
            + (f" — {decision['reason']}" if decision.get("reason") else ""),
            highlight=False,
        )
        table = Table("path", "entered", "converted", "rate", "blocked")
        for arm in decision.get("arms", []):
            table.add_row(
                arm["name"],
                str(arm["entered"]),
                str(arm["converted"]),
                f"{arm['rate']:.2%}",
                arm["blocked"] or "",
            )
        for c in decision.get("comparisons", []):
            lo, hi = c["interval"]
            cli.out.print(
                f"  {c['arm']} vs {c['baseline']}: {c['difference']:+.2%} "
                f"[{lo:+.2%}, {hi:+.2%}], likelihood ratio {c['likelihood_ratio']:.3g}",
                highlight=False,
            )
        if decision.get("arms"):
            cli.out.print(table)
