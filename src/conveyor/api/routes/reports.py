"""Admin endpoints for reports: an automation (per node, with its funnel), a template (per
version), and the workspace overview; per day, week or month, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.domain.errors import InvalidInput
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["reports"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
From = Annotated[
    date | None,
    Query(
        alias="from",
        description="first day (YYYY-MM-DD, workspace timezone); default: 29 days before `to`",
    ),
]
To = Annotated[date | None, Query(description="last day, included; default: today")]
Granularity = Annotated[str, Query(description="day, week (from Monday) or month")]
Format = Annotated[
    str | None, Query(description="json or csv (or send Accept: text/csv); default json")
]
Machine = Annotated[bool, Query(description="count machine opens and bot clicks in the rates too")]
Table = Annotated[
    str, Query(description="for CSV: which rows, `series` (periods) or the report's other list")
]
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}


@router.get("/reports/automations/{key}", responses=CSV_RESPONSES)
def automation_report(
    key: str,
    workspace: Admin,
    request: Request,
    start: From = None,
    to: To = None,
    granularity: Granularity = "day",
    format: Format = None,  # noqa: A002
    machine: Machine = False,
    table: Table = "series",
) -> Any:
    """Entered, goal reached, completed, exited; sent, delivered, bounces, complaints,
    unsubscribes, opens and clicks (machine ones apart), attributed conversions and revenue;
    per period, per node (in graph order, with contacts waiting there now) and the funnel."""
    report = conveyor_of(request).reports.automation(
        workspace, key, start, to, granularity, machine=machine
    )
    return _answer(request, report, format, table, ("series", "nodes", "funnel"), key)


@router.get("/reports/templates/{key}", responses=CSV_RESPONSES)
def template_report(
    key: str,
    workspace: Admin,
    request: Request,
    start: From = None,
    to: To = None,
    granularity: Granularity = "day",
    format: Format = None,  # noqa: A002
    machine: Machine = False,
    table: Table = "series",
) -> Any:
    """A template's messages wherever they were sent from: per period and per version."""
    report = conveyor_of(request).reports.template(
        workspace, key, start, to, granularity, machine=machine
    )
    return _answer(request, report, format, table, ("series", "versions"), key)


@router.get("/reports/overview", responses=CSV_RESPONSES)
def overview_report(
    workspace: Admin,
    request: Request,
    start: From = None,
    to: To = None,
    granularity: Granularity = "day",
    format: Format = None,  # noqa: A002
    machine: Machine = False,
    table: Table = "series",
) -> Any:
    """The workspace: all messages and conversions (attributed or not), per period, per
    automation and per channel."""
    report = conveyor_of(request).reports.overview(
        workspace, start, to, granularity, machine=machine
    )
    tables = ("series", "automations", "channels")
    return _answer(request, report, format, table, tables, "overview")


def _answer(
    request: Request,
    report: dict[str, Any],
    format: str | None,  # noqa: A002
    table: str,
    tables: tuple[str, ...],
    name: str,
) -> Any:
    if format not in (None, "json", "csv"):
        raise InvalidInput("format", "json or csv")
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if not wants_csv:
        return report
    if table not in tables:
        raise InvalidInput("table", f"one of {', '.join(tables)}")
    return Response(
        to_csv(report[table]),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="report-{name}-{table}.csv"',
            # The model is part of what the figures mean, also in a spreadsheet.
            "X-Attribution-Model": report["attribution"]["name"],
        },
    )


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    if rows:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
