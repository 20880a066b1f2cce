"""Test a contact: one contact walked through an automation (its live version, or a YAML draft)
on a virtual clock, with the events the marketer makes happen; each step with its reason and its
time. The simulator writes nothing and sends nothing."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError, InvalidInput
from conveyor.domain.permissions import Action
from conveyor.services.signin import SignedIn
from conveyor.services.simulate.inputs import injected
from conveyor.web.pages import render
from conveyor.web.session import acting, conveyor_of, signed_in

router = APIRouter(prefix="/automations")
Member = Annotated[SignedIn, Depends(signed_in)]
_LINE = re.compile(
    r"^(?P<event>[^\s@{]+)\s*(?:(?:after|@)\s*(?P<at>[^{]+?))?\s*(?P<props>\{.*\})?$"
)
MAX_DAYS = 365
FORM = ("contact", "events", "days", "source", "definition")


def events_of(text: str) -> list[dict[str, Any]]:
    """One event a line: `cart_updated`, `order_completed after 30 minutes`, optionally with
    its properties as JSON: `cart_updated {"items": [{"name": "Mug"}]}`."""
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _LINE.match(line)
        if not found:
            raise InvalidInput(
                "events", f"line {number}: EVENT [after DURATION] [{{properties}}], e.g. "
                "'order_completed after 30 minutes'"
            )  # fmt: skip
        item: dict[str, Any] = {"event": found["event"], "at": (found["at"] or "now").strip()}
        if found["props"]:
            try:
                item["properties"] = json.loads(found["props"])
            except ValueError as exc:
                reason = f"line {number}: properties are not JSON ({exc})"
                raise InvalidInput("events", reason) from None
        out.append(item)
    return out


def _trigger_events(graph: Any) -> str:
    names = [t.name for t in graph.automation.triggers if t.date is None and t.name]
    return "\n".join(dict.fromkeys(names))


def _page(
    request: Request, member: SignedIn, key: str, status: int = 200, **shown: Any
) -> Response:
    views = conveyor_of(request).automation_views
    graph = views.graph(member.workspace, key)
    live_yaml = views.definition_yaml(member.workspace, key, graph.version)
    values = {
        "contact": "",
        "events": _trigger_events(graph),
        "days": "14",
        "source": "live",
        "definition": live_yaml,
    } | {
        k: v for k, v in shown.items() if k in ("contact", "events", "days", "source", "definition")
    }
    return render(
        request,
        "automations/try.html",
        member,
        status=status,
        section="automations",
        title=f"{graph.name}: test a contact",
        graph=graph,
        form=values,
        errors=shown.get("errors") or {},
        result=shown.get("result"),
    )


@router.get("/{key}/try")
async def try_page(request: Request, member: Member, key: str, contact: str = "") -> Response:
    return _page(request, member, key, contact=contact)


@router.post("/{key}/try")
async def try_contact(request: Request, key: str) -> Response:
    # It reads and writes nothing, so anyone who may see the automation may try it.
    member = await acting(request, Action.VIEW)
    form = await request.form()
    shown = {k: str(form.get(k, "")) for k in FORM}
    conveyor = conveyor_of(request)
    ws = member.workspace
    errors: dict[str, str] = {}
    result = None
    try:
        days = _days(shown["days"])
        events = injected(events_of(shown["events"]))
        if shown["source"] == "yaml":
            definition = _yaml(shown["definition"])
        else:
            views = conveyor.automation_views
            graph = views.graph(ws, key)
            definition = yaml.safe_load(views.definition_yaml(ws, key, graph.version))
        if not shown["contact"].strip():
            raise InvalidInput("contact", "choose a contact: an email, an id or an external id")
        try:
            who = conveyor.template_editor.find_contact(ws, shown["contact"])
        except ConveyorError as exc:
            raise InvalidInput("contact", exc.detail) from None
        start = conveyor.clock.now()
        report = conveyor.simulator.try_contact(ws, definition, who.id, events, days)
        result = _result(report.path(who.id), who, start, days)
    except InvalidInput as exc:
        field = exc.field.split(".")[0] if exc.field else ""
        if field in ("contact", "events", "days", "definition"):
            errors[field] = exc.reason
        else:  # a problem of the automation itself: its own part named
            errors["definition"] = str(exc)
    return _page(
        request, member, key, status=422 if errors else 200, errors=errors, result=result, **shown
    )


def _days(raw: str) -> int:
    try:
        days = int(raw or 14)
    except ValueError:
        raise InvalidInput("days", f"a whole number of days, 1 to {MAX_DAYS}") from None
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput("days", f"a whole number of days, 1 to {MAX_DAYS}")
    return days


def _yaml(text: str) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise InvalidInput(
            "definition", f"{where}not YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidInput("definition", "an automation: key, name, triggers, nodes")
    return raw


def since(start: datetime, at: datetime) -> str:
    """A step's moment from the start of the test: `at the start`, `+1 hour`, `+1 day 2 hours`."""
    seconds = int((at - start).total_seconds())
    if seconds <= 0:
        return "at the start"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
        if len(parts) == 2:
            break
    return "+" + " ".join(parts)


def why(reason: Any) -> str:
    """A step's reason in words: its `why`; a timeout says how long it waited and what it
    last saw."""
    if not isinstance(reason, dict):
        return str(reason or "")
    if isinstance(reason.get("why"), str):
        return reason["why"]
    if "timeout" in reason:
        last = reason.get("last")
        seen = (
            f"; last checked: {last['why']}" if isinstance(last, dict) and last.get("why") else ""
        )
        return f"timed out after {reason['timeout']}{seen}"
    return "; ".join(f"{k}: {v}" for k, v in reason.items() if v is not None)[:500]


def _result(path: dict[str, Any], who: Any, start: datetime, days: int) -> dict[str, Any]:
    steps = []
    for step in path["steps"]:
        at = datetime.fromisoformat(step["at"])
        steps.append(step | {"at": at, "since": since(start, at), "why": why(step["reason"])})
    messages = []
    for message in path["messages"]:
        created = datetime.fromisoformat(message["created_at"])
        sent = datetime.fromisoformat(message["sent_at"]) if message["sent_at"] else None
        messages.append(message | {"created_at": created, "sent_at": sent})
    return {
        "contact": who,
        "start": start,
        "end": start + timedelta(days=days),
        "steps": steps,
        "messages": messages,
    }
