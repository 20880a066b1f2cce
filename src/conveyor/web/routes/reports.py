"""Reports: the workspace's KPIs over a date range (sent, delivered, human opens with machine
opens shown apart, clicks, conversions, revenue), a time series and per-automation and
per-channel figures; an automation's report with its funnel. Read from the reports service (the
rollups the `GET /reports/...` API reads); charts are SVG drawn on the server."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.errors import InvalidInput
from conveyor.services.signin import SignedIn
from conveyor.web.charts import funnel, time_chart
from conveyor.web.pages import render
from conveyor.web.session import conveyor_of, signed_in

router = APIRouter(prefix="/reports")
Member = Annotated[SignedIn, Depends(signed_in)]
LINES = [
    ("sent", "Sent", "line-sent"),
    ("opens_unique", "Opened (people)", "line-opened"),
    ("clicks_unique", "Clicked (people)", "line-clicked"),
    ("conversions", "Conversions", "line-converted"),
]


def _dates(start: str, end: str) -> tuple[date | None, date | None, dict[str, str]]:
    errors: dict[str, str] = {}
    parsed: list[date | None] = []
    for name, text in (("from", start), ("to", end)):
        try:
            parsed.append(date.fromisoformat(text) if text else None)
        except ValueError:
            errors[name] = "a date as YYYY-MM-DD"
            parsed.append(None)
    return parsed[0], parsed[1], errors


def _report(
    read: Any, start: str, end: str, gran: str
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The report, or the form's errors by field (a bad range is shown, not a 5xx)."""
    first, last, errors = _dates(start, end)
    report = None
    if not errors:
        try:
            report = read(first, last, gran if gran in ("day", "week", "month") else "day")
        except InvalidInput as exc:
            errors[exc.field if exc.field in ("from", "to", "granularity") else "to"] = exc.reason
    return report, errors


@router.get("")
async def overview(request: Request, member: Member, granularity: str = "day") -> Response:
    # `from` and `to` as the API names them (`from` is no Python name)
    start = request.query_params.get("from", "")
    end = request.query_params.get("to", "")
    reports = conveyor_of(request).reports
    report, errors = _report(
        lambda a, b, g: reports.overview(member.workspace, a, b, g),
        start,
        end,
        granularity,
    )
    return render(
        request,
        "reports/overview.html",
        member,
        status=422 if errors else 200,
        section="reports",
        title="Reports",
        report=report,
        errors=errors,
        given={"from": start, "to": end, "granularity": granularity},
        chart=time_chart(report["series"], LINES, width=1160) if report else None,
    )


@router.get("/automations/{key}")
async def automation_report(
    request: Request, member: Member, key: str, granularity: str = "day"
) -> Response:
    start = request.query_params.get("from", "")
    end = request.query_params.get("to", "")
    conveyor = conveyor_of(request)
    info = conveyor.automations.get(member.workspace, key)
    report, errors = _report(
        lambda a, b, g: conveyor.reports.automation(member.workspace, key, a, b, g),
        start,
        end,
        granularity,
    )
    bars, height = funnel(report["funnel"]) if report else ([], 0)
    return render(
        request,
        "reports/automation.html",
        member,
        status=422 if errors else 200,
        section="reports",
        title=f"{info.name} — report",
        info=info,
        report=report,
        errors=errors,
        given={"from": start, "to": end, "granularity": granularity},
        chart=time_chart(report["series"], LINES) if report else None,
        bars=bars,
        funnel_height=height,
    )
