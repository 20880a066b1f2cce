"""The automation builder: the canvas page (new or an existing automation), its checks and YAML
view (JSON for the page's script), drafts, and review + publish with the diff shown first."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from conveyor.domain.automations.schema import automation_schema
from conveyor.domain.errors import ConveyorError, NotFound
from conveyor.domain.permissions import Action
from conveyor.services.automation_drafts import read_yaml, to_yaml
from conveyor.services.signin import SignedIn
from conveyor.web.pages import base, redirect, render, unified_rows
from conveyor.web.session import acting, allowed, conveyor_of, signed_in

router = APIRouter()
Member = Annotated[SignedIn, Depends(signed_in)]
EMPTY = {"key": "", "name": "", "triggers": [], "entry": {"repeat": "once"}, "nodes": []}


def _builder(request: Request, member: SignedIn, key: str | None, draft: int | None) -> Response:
    allowed(member, Action.MANAGE_AUTOMATIONS)
    conveyor = conveyor_of(request)
    info = conveyor.automations.get(member.workspace, key) if key else None
    source = to_yaml(info.definition) if info else to_yaml(EMPTY)
    if draft is not None:
        source = conveyor.automation_drafts.get(member.workspace, draft).source
    definition, problem = read_yaml(source)
    start = {
        "draft": draft,
        "key": key,
        "yaml": source,
        "definition": definition if problem is None and isinstance(definition, dict) else None,
    }
    return render(
        request,
        "automations/builder.html",
        member,
        section="automations",
        title=f"Edit {info.name}" if info else "New automation",
        info=info,
        start=start,
        # In the schema's own order (tojson would sort it): forms list a node's fields as written.
        schema_json=Markup(
            json.dumps(automation_schema())
            .replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
        ),
        drafts=conveyor.automation_drafts.all(member.workspace, key) if key else [],
    )


@router.get("/builder")
async def new_automation(request: Request, member: Member, draft: int | None = None) -> Response:
    return _builder(request, member, None, draft)


@router.get("/automations/{key}/edit")
async def edit_automation(
    request: Request, member: Member, key: str, draft: int | None = None
) -> Response:
    return _builder(request, member, key, draft)


def _definition(form: Any) -> tuple[Any, dict[str, Any] | None]:
    """The definition a form sends: `definition` as JSON (the canvas) or `yaml` (the YAML view)."""
    if isinstance(form.get("definition"), str):
        try:
            return json.loads(form["definition"]), None
        except ValueError:
            return None, {"line": 1, "column": 1, "message": "the canvas sent no definition"}
    raw, problem = read_yaml(str(form.get("yaml") or ""))
    if problem is not None:
        return None, {"line": problem.line, "column": problem.column, "message": problem.message}
    return raw, None


@router.post("/builder/check")
async def check(request: Request) -> Response:
    """The canvas's or the YAML view's definition: its YAML, the definition read back, and what
    `conveyor automation validate` would say of it (each problem with its field's path)."""
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    form = await request.form()
    raw, yaml_error = _definition(form)
    if yaml_error is not None:
        return JSONResponse({"yaml_error": yaml_error, "problems": []})
    problems = conveyor_of(request).automation_drafts.check(member.workspace, raw)
    return JSONResponse(
        {
            "definition": raw,
            "yaml": to_yaml(raw),
            "yaml_error": None,
            "problems": [{"path": p.path, "message": p.message, "text": p.text} for p in problems],
        }
    )


@router.post("/builder/drafts")
async def save_draft(request: Request) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    form = await request.form()
    given = str(form.get("draft") or "")
    saved = conveyor_of(request).automation_drafts.save(
        member.workspace, str(form.get("yaml") or ""), int(given) if given.isdigit() else None
    )
    return JSONResponse({"id": saved.id, "name": saved.name, "updated_at": str(saved.updated_at)})


@router.get("/builder/drafts")
async def drafts_page(request: Request, member: Member) -> Response:
    return render(
        request,
        "automations/drafts.html",
        member,
        section="automations",
        title="Drafts",
        drafts=conveyor_of(request).automation_drafts.all(member.workspace),
        # a draft of a new automation already has its key: it opens in the new-automation builder
        existing={a.key for a in conveyor_of(request).automations.all(member.workspace)},
    )


@router.post("/builder/drafts/{draft}/discard")
async def discard_draft(request: Request, draft: int) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    conveyor_of(request).automation_drafts.discard(member.workspace, draft)
    return redirect(f"{base()}/builder/drafts", "The draft is discarded.")


@router.get("/builder/review")
async def review(request: Request, member: Member, draft: int) -> Response:
    """The draft's problems and its diff against the live version, then the publish form."""
    allowed(member, Action.MANAGE_AUTOMATIONS)
    conveyor = conveyor_of(request)
    saved = conveyor.automation_drafts.get(member.workspace, draft)
    raw, yaml_error = read_yaml(saved.source)
    problems = conveyor.automation_drafts.check(member.workspace, raw) if yaml_error is None else []
    key = raw.get("key") if isinstance(raw, dict) and isinstance(raw.get("key"), str) else None
    live = None
    if key:
        try:
            live = conveyor.automations.get(member.workspace, key)
        except NotFound:
            live = None
    before = to_yaml(live.definition).splitlines() if live else []
    after = to_yaml(raw).splitlines() if yaml_error is None else saved.source.splitlines()
    diff = unified_rows(
        before, after, f"version {live.version}" if live else "nothing yet", "this draft"
    )
    waiting = conveyor.automation_drafts.waiting(member.workspace, key) if live and key else 0
    return render(
        request,
        "automations/review.html",
        member,
        section="automations",
        title=f"Review {saved.name}",
        draft=saved,
        live=live,
        key=key,
        yaml_error=yaml_error,
        problems=problems,
        diff=diff,
        waiting=waiting,
        unchanged=live is not None and yaml_error is None and live.definition == raw,
        back=f"{base()}/automations/{live.key}/edit?draft={saved.id}"
        if live
        else f"{base()}/builder?draft={saved.id}",
    )


@router.post("/builder/publish")
async def publish(request: Request) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    form = await request.form()
    given = str(form.get("draft") or "")
    draft = int(given) if given.isdigit() else None
    raw, yaml_error = read_yaml(str(form.get("definition") or ""))
    again = f"{base()}/builder/review?draft={draft}" if draft else f"{base()}/builder"
    if yaml_error is not None:
        return redirect(again, f"Line {yaml_error.line}: {yaml_error.message}", failed=True)
    conveyor = conveyor_of(request)
    try:
        info, what = conveyor.automation_drafts.publish(member.workspace, raw, draft)
        if form.get("activate") == "yes" and info.status != "active":
            info = conveyor.automations.set_status(member.workspace, info.key, "active")
    except ConveyorError as exc:
        return redirect(again, exc.detail, failed=True)
    said = {
        "created": "is created",
        "new version": f"has version {info.version}",
        "unchanged": "is unchanged",
    }
    return redirect(
        f"{base()}/automations/{info.key}", f"“{info.name}” {said.get(what, what)} ({info.status})."
    )
