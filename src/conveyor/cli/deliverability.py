"""`conveyor deliverability status|check|resume PROVIDER`: the deliverability guard from the
command line (main's helpers are imported when a command runs, as main registers this app)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.domain.errors import ConveyorError

app = typer.Typer(
    help="The deliverability guard: marketing email per mailbox provider.", no_args_is_help=True
)
WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]


def _do(workspace: str | None, work: Any) -> Any:
    from conveyor.cli import main as cli

    conveyor = cli._open()
    try:
        return work(conveyor, cli._workspace(conveyor, workspace))
    except ConveyorError as exc:
        cli._fail(exc.detail)  # an InvalidInput's detail names its field already
    finally:
        conveyor.close()


def _rate(stats: dict[str, Any], key: str) -> str:
    return f"{stats[key]:.2%}" if stats.get(key) is not None else "-"


def _table(providers: list[dict[str, Any]]) -> None:
    from conveyor.cli.main import out

    table = Table("provider", "status", "sent", "complaints", "hard bounces", "reason")
    for p in providers:
        s = p["stats"] or {}
        table.add_row(
            p["provider"],
            p["status"],
            str(s.get("sent", 0)),
            f"{s.get('complaints', 0)} ({_rate(s, 'complaint_rate')})",
            f"{s.get('hard_bounces', 0)} ({_rate(s, 'bounce_rate')})",
            p["reason"] or "",
        )
    out.print(table)


@app.command("status")
def status(workspace: WorkspaceOpt = None) -> None:
    """Each mailbox provider: ok, throttled or paused, why, and its rates."""
    _table(_do(workspace, lambda c, ws: c.deliverability.status(ws))["providers"])


@app.command("check")
def check(workspace: WorkspaceOpt = None) -> None:
    """Judge every provider now (the worker does so every minute)."""

    def work(c: Any, ws: Any) -> dict[str, Any]:
        c.deliverability.check(ws)
        return c.deliverability.status(ws)

    _table(_do(workspace, work)["providers"])


@app.command("resume")
def resume(
    provider: Annotated[str, typer.Argument(help="gmail, yahoo, outlook, icloud or other")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Resume marketing email to a paused (or throttled) provider; what it held goes out."""
    from conveyor.cli.main import out

    done = _do(workspace, lambda c, ws: c.deliverability.resume(ws, provider))
    out.print(f"{provider}: resumed; {done['released']} held emails released", highlight=False)
