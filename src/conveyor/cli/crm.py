"""`conveyor member|pipeline|deal|task`: the sales side from the command line.

The helpers (opening the app, failing with a message, the workspace option) are main's; they
are imported when a command runs, as main registers these apps at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.domain.errors import ConveyorError

member_app = typer.Typer(help="Team members: owners of contacts and deals.", no_args_is_help=True)
pipeline_app = typer.Typer(help="Pipelines as code, and their boards.", no_args_is_help=True)
deal_app = typer.Typer(help="Deals and the forecast.", no_args_is_help=True)
task_app = typer.Typer(help="Tasks of the team.", no_args_is_help=True)
APPS = {"member": member_app, "pipeline": pipeline_app, "deal": deal_app, "task": task_app}

WorkspaceOpt = Annotated[
    str | None, typer.Option("--workspace", "-w", help="default: the default workspace")
]
PipelineFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]


def _do(workspace: str | None, work: Any, where: str = "") -> Any:
    """Open the app, run `work(conveyor, ws)`, and turn a ConveyorError into a message."""
    from conveyor.cli import main as cli

    conveyor = cli._open()
    try:
        return work(conveyor, cli._workspace(conveyor, workspace))
    except ConveyorError as exc:
        field = getattr(exc, "field", None)
        cli._fail(f"{where}{field + ': ' if field else ''}{exc.detail}")
    finally:
        conveyor.close()


def _print(value: Any) -> None:
    from conveyor.cli.main import out

    out.print(value)


@member_app.command("add")
def member_add(
    name: str,
    email: str,
    role: Annotated[str, typer.Option(help="owner, admin, marketer, sales or viewer")] = "sales",
    workspace: WorkspaceOpt = None,
) -> None:
    member = _do(workspace, lambda c, ws: c.crm.add_member(ws, name, email, role))
    _print(f"member {member['id']}: {member['name']} <{member['email']}> ({member['role']})")


@member_app.command("list")
def member_list(workspace: WorkspaceOpt = None) -> None:
    table = Table("id", "name", "email", "role")
    for m in _do(workspace, lambda c, ws: c.crm.members(ws)):
        table.add_row(str(m["id"]), m["name"], m["email"], m["role"])
    _print(table)


@pipeline_app.command("apply")
def pipeline_apply(file: PipelineFile, workspace: WorkspaceOpt = None) -> None:
    """Create the pipeline in FILE ({key, name, stages: [{name, probability}]}) or change it."""
    from conveyor.cli.main import _read_mapping

    raw = _read_mapping(file, "a pipeline (a mapping with key, name and stages)")
    pipeline, result = _do(workspace, lambda c, ws: c.crm.apply_pipeline(ws, raw), f"{file}: ")
    stages = " → ".join(f"{s['name']} ({s['probability']}%)" for s in pipeline["stages"])
    _print(f"{pipeline['key']}: {result}: {stages}")


@pipeline_app.command("list")
def pipeline_list(workspace: WorkspaceOpt = None) -> None:
    table = Table("key", "name", "stages")
    for p in _do(workspace, lambda c, ws: c.crm.pipelines(ws)):
        table.add_row(p["key"], p["name"], ", ".join(s["name"] for s in p["stages"]))
    _print(table)


@pipeline_app.command("board")
def pipeline_board(key: str, workspace: WorkspaceOpt = None) -> None:
    """The pipeline's open deals by stage."""
    board = _do(workspace, lambda c, ws: c.crm.board(ws, key))
    table = Table("stage", "%", "deals", "value", "titles")
    for s in board["stages"]:
        value = ", ".join(f"{v} {c}" for c, v in s["value"].items())
        titles = ", ".join(f"#{d['id']} {d['title']}" for d in s["deals"][:5])
        table.add_row(s["stage"], str(s["probability"]), str(s["count"]), value, titles)
    _print(table)


@deal_app.command("list")
def deal_list(
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline's")] = None,
    status: Annotated[str | None, typer.Option(help="open, won or lost")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    table = Table("id", "title", "pipeline", "stage", "status", "value", "owner", "contact")
    deals = _do(workspace, lambda c, ws: c.crm.deals(ws, pipeline=pipeline, status=status))
    for d in deals:
        table.add_row(
            str(d["id"]), d["title"], d["pipeline"], d["stage"], d["status"],
            f"{d['value']} {d['currency']}", str(d["owner_id"] or ""), str(d["contact_id"]),
        )  # fmt: skip
    _print(table)


@deal_app.command("move")
def deal_move(deal_id: int, stage: str, workspace: WorkspaceOpt = None) -> None:
    """Move a deal to STAGE of its pipeline (records deal.stage_changed)."""
    deal = _do(workspace, lambda c, ws: c.crm.update_deal(ws, deal_id, {"stage": stage}))
    _print(f"deal {deal['id']}: {deal['stage']}")


@deal_app.command("close")
def deal_close(
    deal_id: int,
    status: Annotated[str, typer.Argument(help="won or lost")],
    reason: Annotated[str | None, typer.Option(help="why it was lost")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    changes: dict[str, Any] = {"status": status}
    if reason is not None:
        changes["lost_reason"] = reason
    deal = _do(workspace, lambda c, ws: c.crm.update_deal(ws, deal_id, changes))
    _print(f"deal {deal['id']}: {deal['status']}")


@deal_app.command("forecast")
def deal_forecast(
    by: Annotated[str, typer.Option(help="pipeline, stage, owner or month")] = "stage",
    pipeline: Annotated[str | None, typer.Option(help="only this pipeline's")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Open and probability-weighted value of the open deals."""
    if by not in ("pipeline", "stage", "owner", "month"):
        from conveyor.cli.main import _fail

        _fail("--by is pipeline, stage, owner or month")
    rows = _do(workspace, lambda c, ws: c.crm.forecast(ws, pipeline))[by]
    keys = ["pipeline", "stage"] if by == "stage" else [by]
    table = Table(*keys, "currency", "deals", "open", "weighted")
    for row in rows:
        table.add_row(
            *(str(row[k] or "—") for k in keys), row["currency"], str(row["deals"]),
            str(row["open_value"]), str(row["weighted_value"]),
        )  # fmt: skip
    _print(table)


@task_app.command("list")
def task_list(
    open_only: Annotated[bool, typer.Option("--open", help="only tasks not done")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    table = Table("id", "type", "title", "due", "assignee", "deal", "done", "overdue")
    tasks = _do(workspace, lambda c, ws: c.tasks.all(ws, done=False if open_only else None))
    for t in tasks:
        table.add_row(
            str(t["id"]), t["type"], t["title"], str(t["due_at"] or ""),
            str(t["assignee_id"] or ""), str(t["deal_id"] or ""), "yes" if t["done"] else "",
            "yes" if t["overdue"] else "",
        )  # fmt: skip
    _print(table)


@task_app.command("done")
def task_done(task_id: int, workspace: WorkspaceOpt = None) -> None:
    task = _do(workspace, lambda c, ws: c.tasks.update(ws, task_id, {"done": True}))
    _print(f"task {task['id']}: done")
