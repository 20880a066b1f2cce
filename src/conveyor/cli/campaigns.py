"""`conveyor campaign …` and `conveyor bulk …`: newsletters as YAML files, their lifecycle and
report, and bulk actions on an audience from the command line.

The helpers (opening the app, failing with one line, the workspace option) are main's, reached
through `conveyor.cli.crm._do`; main registers these apps at its end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from conveyor.cli.crm import WorkspaceOpt, _do, _print

campaign_app = typer.Typer(help="Campaigns (newsletters) as code.", no_args_is_help=True)
bulk_app = typer.Typer(help="Bulk actions on an audience, run by the worker.", no_args_is_help=True)
APPS = {"campaign": campaign_app, "bulk": bulk_app}

CampaignFile = Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)]
Lists = Annotated[list[str], typer.Option("--list", help="audience: members of this list")]
Segments = Annotated[list[str], typer.Option("--segment", help="audience: this segment")]
Tags = Annotated[list[str], typer.Option("--tag", help="audience: contacts with this tag")]
NotLists = Annotated[list[str], typer.Option("--exclude-list", help="minus this list")]
NotSegments = Annotated[list[str], typer.Option("--exclude-segment", help="minus this segment")]
NotTags = Annotated[list[str], typer.Option("--exclude-tag", help="minus this tag")]


def _load(file: Path) -> dict[str, Any]:
    from conveyor.cli.main import _read_mapping

    return _read_mapping(file, "a campaign (a mapping with key, template and audience)")


def _line(info: Any) -> str:
    when = f", starts {info.starts_at.isoformat()}" if info.starts_at else ""
    count = f", {info.audience_count} contacts" if info.audience_count is not None else ""
    return f"{info.key}: {info.status}{when}{count}"


@campaign_app.command("validate")
def campaign_validate(file: CampaignFile, workspace: WorkspaceOpt = None) -> None:
    """Check a campaign file against the workspace (template, lists, segments)."""
    spec = _do(workspace, lambda c, ws: c.campaigns.validate(ws, _load(file)), f"{file}: ")
    _print(f"{file}: valid ({spec.channel} campaign '{spec.key}')")


@campaign_app.command("create")
def campaign_create(file: CampaignFile, workspace: WorkspaceOpt = None) -> None:
    """Create the campaign in FILE as a draft, or change the draft; prints its audience now."""

    def work(c: Any, ws: Any) -> tuple[Any, str, int]:
        info, outcome = c.campaigns.apply(ws, _load(file))
        return info, outcome, c.campaigns.count(ws, key=info.key)

    info, outcome, count = _do(workspace, work, f"{file}: ")
    _print(f"{info.key}: {outcome} ({info.status}); audience now: {count} contacts")


@campaign_app.command("list")
def campaign_list(workspace: WorkspaceOpt = None) -> None:
    table = Table("key", "name", "channel", "status", "starts", "audience")
    for c in _do(workspace, lambda conveyor, ws: conveyor.campaigns.all(ws)):
        table.add_row(
            c.key,
            c.name,
            c.channel,
            c.status,
            c.starts_at.isoformat() if c.starts_at else "",
            "" if c.audience_count is None else str(c.audience_count),
        )
    _print(table)


@campaign_app.command("schedule")
def campaign_schedule(
    key: str,
    at: Annotated[str | None, typer.Option(help="an ISO 8601 moment with its offset")] = None,
    date: Annotated[str | None, typer.Option(help="YYYY-MM-DD, with --local-time")] = None,
    local_time: Annotated[str | None, typer.Option(help="HH:MM in each contact's timezone")] = None,
    late: Annotated[str, typer.Option(help="where that time has passed: next_day or now")] = (
        "next_day"
    ),
    workspace: WorkspaceOpt = None,
) -> None:
    """Schedule a draft: --at, or --date with --local-time; neither: the file's schedule."""
    raw: dict[str, Any] | None = None
    if at is not None:
        raw = {"at": at}
    elif date is not None or local_time is not None:
        raw = {"date": date, "local_time": local_time, "late": late}
    info = _do(workspace, lambda c, ws: c.campaigns.schedule(ws, key, raw))
    _print(_line(info))


@campaign_app.command("send")
def campaign_send(key: str, workspace: WorkspaceOpt = None) -> None:
    """Send a draft now (the worker freezes its audience and queues it on its next round)."""

    def work(c: Any, ws: Any) -> Any:
        return c.campaigns.schedule(ws, key, {"at": c.clock.now().isoformat()})

    _print(_line(_do(workspace, work)))


@campaign_app.command("pause")
def campaign_pause(key: str, workspace: WorkspaceOpt = None) -> None:
    _print(_line(_do(workspace, lambda c, ws: c.campaigns.pause(ws, key))))


@campaign_app.command("resume")
def campaign_resume(key: str, workspace: WorkspaceOpt = None) -> None:
    _print(_line(_do(workspace, lambda c, ws: c.campaigns.resume(ws, key))))


@campaign_app.command("cancel")
def campaign_cancel(key: str, workspace: WorkspaceOpt = None) -> None:
    """Withdraw every message not yet handed to delivery; those being sent finish."""
    _print(_line(_do(workspace, lambda c, ws: c.campaigns.cancel(ws, key))))


@campaign_app.command("status")
def campaign_status(key: str, workspace: WorkspaceOpt = None) -> None:
    """The campaign's report: audience, queued, sent, skipped with reasons, opens, clicks …"""
    report = _do(workspace, lambda c, ws: c.campaigns.report(ws, key))
    table = Table("", "count")
    for name in ("audience", "queued", "waiting", "sending", "sent", "delivered", "skipped"):
        table.add_row(name, "" if report[name] is None else str(report[name]))
    for reason, n in report["skipped_reasons"].items():
        table.add_row(f"  {reason}", str(n))
    table.add_row("failed", str(report["failed"]))
    for reason, n in report["failed_reasons"].items():
        table.add_row(f"  {reason}", str(n))
    for name in ("cancelled", "opened", "clicked", "bounced", "complained", "unsubscribed"):
        table.add_row(name, str(report[name]))
    _print(f"{report['key']}: {report['status']}")
    _print(table)
    for note in report["notes"]:
        _print(f"- {note}")


# --- bulk ------------------------------------------------------------------------------------


def _audience(
    lists: list[str],
    segments: list[str],
    tags: list[str],
    not_lists: list[str],
    not_segments: list[str],
    not_tags: list[str],
) -> dict[str, Any]:
    audience: dict[str, Any] = {
        k: v for k, v in (("lists", lists), ("segments", segments), ("tags", tags)) if v
    }
    exclude = {
        k: v for k, v in (("lists", not_lists), ("segments", not_segments), ("tags", not_tags)) if v
    }
    if exclude:
        audience["exclude"] = exclude
    return audience


@bulk_app.command("start")
def bulk_start(
    action: Annotated[
        str, typer.Argument(help="enroll, tag, untag, subscribe, unsubscribe, delete")
    ],
    target: Annotated[
        str | None, typer.Argument(help="the automation, tag or list the action is about")
    ] = None,
    lists: Lists = [],  # noqa: B006 - typer's way of a repeatable option
    segments: Segments = [],  # noqa: B006
    tags: Tags = [],  # noqa: B006
    exclude_lists: NotLists = [],  # noqa: B006
    exclude_segments: NotSegments = [],  # noqa: B006
    exclude_tags: NotTags = [],  # noqa: B006
    yes: Annotated[bool, typer.Option("--yes", help="do not ask to confirm the count")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Count the audience, ask to confirm, and queue the job for the worker."""
    audience = _audience(lists, segments, tags, exclude_lists, exclude_segments, exclude_tags)
    wanted = {"enroll": "automation", "tag": "tag", "untag": "tag", "subscribe": "list"}
    wanted["unsubscribe"] = "list"
    params = {wanted[action]: target} if action in wanted else {}
    count = _do(workspace, lambda c, ws: c.bulk_jobs.preview(ws, action, audience, params))
    if not yes and not typer.confirm(f"{action} {count} contacts?"):
        raise typer.Exit(1)
    job = _do(
        workspace, lambda c, ws: c.bulk_jobs.create(ws, action, audience, params, confirm=True)
    )
    _print(f"bulk job {job.id}: {job.action} {job.total} contacts, {job.status}")


@bulk_app.command("status")
def bulk_status(
    job_id: Annotated[int | None, typer.Argument(help="one job; none: the latest")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    if job_id is not None:
        jobs = [_do(workspace, lambda c, ws: c.bulk_jobs.get(ws, job_id))]
    else:
        jobs = _do(workspace, lambda c, ws: c.bulk_jobs.all(ws))
    table = Table("id", "action", "status", "done", "outcomes", "error")
    for j in jobs:
        outcomes = ", ".join(f"{k}: {v}" for k, v in j.outcomes.items())
        table.add_row(str(j.id), j.action, j.status, f"{j.done}/{j.total}", outcomes, j.error or "")
    _print(table)


@bulk_app.command("cancel")
def bulk_cancel(job_id: int, workspace: WorkspaceOpt = None) -> None:
    """Stop after the chunk in progress; what is done stays done."""
    job = _do(workspace, lambda c, ws: c.bulk_jobs.cancel(ws, job_id))
    _print(f"bulk job {job.id}: {job.status} after {job.done}/{job.total}")
