"""Templates: the list, the editor (Liquid with HTML or MJML, subject, text part) with a live
preview for a chosen contact, errors at their line and column, versions with their differences,
and a test send. The preview is a document of its own, framed, under a CSP that runs nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from conveyor.domain.errors import ConveyorError, InvalidInput, NotFound
from conveyor.domain.permissions import Action
from conveyor.services.signin import SignedIn
from conveyor.services.template_editor import Problem, problem_of
from conveyor.services.templates import TemplateInfo
from conveyor.web.pages import base, redirect, render, unified_rows
from conveyor.web.session import acting, allowed, conveyor_of, signed_in

router = APIRouter(prefix="/templates")
Member = Annotated[SignedIn, Depends(signed_in)]
EDITABLE = ("email", "team")
# The editor's fields, and the content part each one is (the body is html or mjml).
FIELDS = ("subject", "preheader", "body", "text")
# The framed preview: no script, no form, no plugin, no navigation of the panel; the email's
# own inline styles and its images (remote ones too, as a mail client shows them) allowed.
FRAME_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; "
        "font-src https: data:; frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "no-referrer",
}


# --- the form and the content ---------------------------------------------------------------


def draft_of(form: Any, saved: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """(body format, content) from the editor's form; parts it does not edit (from_name,
    reply_to) are kept from the saved version."""
    fmt = "mjml" if str(form.get("format", "html")) == "mjml" else "html"
    content: dict[str, Any] = {
        k: v for k, v in (saved or {}).items() if k in ("from_name", "reply_to")
    }
    for name, part in (
        ("subject", "subject"),
        ("preheader", "preheader"),
        ("body", fmt),
        ("text", "text"),
    ):
        value = str(form.get(name, "")).replace("\r\n", "\n")
        if value.strip():
            content[part] = value
    return fmt, content


def form_of(info: TemplateInfo | None) -> dict[str, str]:
    content = info.content if info else {}
    fmt = "mjml" if content.get("mjml") else "html"
    return {
        "name": info.name if info else "",
        "subject": content.get("subject", ""),
        "preheader": content.get("preheader", ""),
        "format": fmt,
        "body": content.get(fmt, ""),
        "text": content.get("text", ""),
    }


def field_of(problem: Problem) -> str:
    """The editor's field a problem belongs to."""
    part = problem.part
    if part in ("html", "mjml"):
        return "body"
    return part if part in FIELDS or part in ("key", "name", "contact", "to", "event") else "body"


def event_of(form: Any) -> dict[str, Any]:
    """The trigger event's properties the preview renders with (`event.*`), as JSON."""
    text = str(form.get("event", "") or "").strip()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise InvalidInput("event", f"not JSON: {exc}") from None
    if not isinstance(found, dict):
        raise InvalidInput("event", 'an object of properties, e.g. {"items": [{"name": "Mug"}]}')
    return found


def errors_of(problems: list[Problem]) -> dict[str, Problem]:
    found: dict[str, Problem] = {}
    for problem in problems:
        found.setdefault(field_of(problem), problem)
    return found


def _problem_json(problem: Problem) -> dict[str, Any]:
    return problem.as_dict() | {"input": field_of(problem), "text": str(problem)}


# --- pages --------------------------------------------------------------------------------


@router.get("")
async def template_list(request: Request, member: Member) -> Response:
    rows = conveyor_of(request).templates.all(member.workspace)
    return render(
        request,
        "templates/list.html",
        member,
        section="templates",
        title="Templates",
        rows=rows,
    )


def _editor(
    request: Request,
    member: SignedIn,
    info: TemplateInfo | None,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, Problem] | None = None,
    status: int = 200,
    sent: str | None = None,
    contact: str = "",
    to: str = "",
    key: str = "",
    event: str = "",
) -> Response:
    conveyor = conveyor_of(request)
    tests = conveyor.template_editor.test_sends(member.workspace, info.key) if info else []
    errors = dict(errors or {})
    preview = None
    if info is not None and info.channel in EDITABLE and not errors:
        content = draft_of(form, info.content)[1] if form else info.content
        try:
            preview = conveyor.template_editor.render(
                member.workspace, info.channel, content, contact, event_of({"event": event})
            )
        except NotFound as exc:
            errors["contact"] = Problem("contact", exc.detail)
        except InvalidInput as exc:
            if exc.field == "event":
                errors["event"] = problem_of(exc)
        except ConveyorError:
            preview = None
    return render(
        request,
        "templates/editor.html",
        member,
        status=status,
        section="templates",
        title=info.name if info else "New template",
        info=info,
        form=form or form_of(info),
        errors=errors,
        preview=preview,
        sent=sent,
        contact=contact,
        event=event,
        to=to or member.email,
        new_key=key,
        tests=tests,
        editable=info is None or info.channel in EDITABLE,
    )


@router.get("/new")
async def new_template(request: Request, member: Member) -> Response:
    allowed(member, Action.EDIT_TEMPLATES)
    return _editor(request, member, None)


@router.post("/new")
async def create_template(request: Request) -> Response:
    member = await acting(request, Action.EDIT_TEMPLATES)
    form = await request.form()
    key = str(form.get("key", "")).strip()
    name = str(form.get("name", "")).strip() or None
    _fmt, content = draft_of(form)
    conveyor = conveyor_of(request)
    shown = {k: str(form.get(k, "")) for k in ("name", "format", *FIELDS)}
    problems = conveyor.template_editor.check("email", content)
    if not problems:
        if any(t.key == key for t in conveyor.templates.all(member.workspace)):
            problems = [Problem("key", f"a template '{key}' exists already: choose another key")]
        else:
            try:
                info, _ = conveyor.templates.save(member.workspace, key, "email", content, name)
            except InvalidInput as exc:
                problems = [problem_of(exc)]
            else:
                return redirect(
                    f"{base()}/templates/{info.key}", f"Template “{info.name}” created."
                )
    return _editor(
        request, member, None, form=shown, errors=errors_of(problems), status=422, key=key
    )


@router.post("/render.json")
async def render_draft(request: Request) -> Response:
    """The draft checked and rendered for the chosen contact: subject, text part and every
    problem with its line and column (the live preview's data; the HTML is framed apart)."""
    member = await acting(request, Action.VIEW)
    form = await request.form()
    editor = conveyor_of(request).template_editor
    channel = str(form.get("channel", "email"))
    _fmt, content = draft_of(form)
    problems = editor.check(channel, content)
    out: dict[str, Any] = {"ok": not problems, "problems": [_problem_json(p) for p in problems]}
    if not problems:
        try:
            event = event_of(form)
            done = editor.render(
                member.workspace, channel, content, str(form.get("contact", "")), event
            )
        except InvalidInput as exc:
            key = "event_problem" if exc.field == "event" else "render_problem"
            out |= {key: exc.reason if exc.field == "event" else exc.detail, "ok": False}
        except ConveyorError as exc:
            out["contact_problem" if exc.status == 404 else "render_problem"] = exc.detail
            if exc.status != 404:
                out["ok"] = False
        else:
            out |= {
                "subject": done.subject,
                "preheader": done.preheader,
                "text": done.text,
                "contact": {"id": done.contact.id, "email": done.contact.email}
                if done.contact
                else None,
            }
    return JSONResponse(out, headers={"Cache-Control": "no-store"})


@router.post("/frame")
async def frame_draft(request: Request) -> Response:
    """The draft's HTML for the preview frame (posted into it by the editor's form)."""
    member = await acting(request, Action.VIEW)
    form = await request.form()
    _fmt, content = draft_of(form)
    return _frame(request, member, str(form.get("channel", "email")), content, form)


@router.get("/{key}")
async def editor_page(request: Request, member: Member, key: str, contact: str = "") -> Response:
    info = conveyor_of(request).templates.get(member.workspace, key)
    return _editor(request, member, info, contact=contact)


@router.get("/{key}/frame")
async def frame_saved(request: Request, member: Member, key: str, contact: str = "") -> Response:
    """The saved version's HTML for the preview frame (its first content, before any edit)."""
    info = conveyor_of(request).templates.get(member.workspace, key)
    return _frame(request, member, info.channel, info.content, {"contact": contact})


@router.post("/{key}")
async def save_template(request: Request, key: str) -> Response:
    member = await acting(request, Action.EDIT_TEMPLATES)
    form = await request.form()
    conveyor = conveyor_of(request)
    info = conveyor.templates.get(member.workspace, key)
    shown = {k: str(form.get(k, "")) for k in ("name", "format", *FIELDS)}
    if info.channel not in EDITABLE:
        return redirect(
            f"{base()}/templates/{key}", "Only email templates are edited here.", failed=True
        )
    _fmt, content = draft_of(form, info.content)
    problems = conveyor.template_editor.check(info.channel, content)
    if not problems:
        try:
            saved, result = conveyor.templates.save(
                member.workspace, key, info.channel, content, shown["name"].strip() or None
            )
        except InvalidInput as exc:
            problems = [problem_of(exc)]
        else:
            said = {
                "new version": f"Saved as version {saved.version}.",
                "renamed": f"Renamed; still version {saved.version}.",
            }.get(result, f"Nothing changed: still version {saved.version}.")
            return redirect(f"{base()}/templates/{key}", said)
    return _editor(
        request,
        member,
        info,
        form=shown,
        errors=errors_of(problems),
        status=422,
        contact=str(form.get("contact", "")),
        to=str(form.get("to", "")),
        event=str(form.get("event", "")),
    )


@router.post("/{key}/test")
async def test_send(request: Request, key: str) -> Response:
    """Send the draft as it is in the editor (not saved) to an address, once."""
    member = await acting(request, Action.EDIT_TEMPLATES)
    form = await request.form()
    conveyor = conveyor_of(request)
    info = conveyor.templates.get(member.workspace, key)
    shown = {k: str(form.get(k, "")) for k in ("name", "format", *FIELDS)}
    _fmt, content = draft_of(form, info.content)
    contact, to = str(form.get("contact", "")), str(form.get("to", ""))
    problems = conveyor.template_editor.check(info.channel, content)
    sent = None
    status = 200
    if not problems:
        try:
            sent = await asyncio.to_thread(
                conveyor.template_editor.send_test,
                member.workspace,
                member.member_id,
                member.email,
                key,
                info.channel,
                content,
                to,
                contact,
                event_of(form),
            )
        except InvalidInput as exc:
            field = exc.field if exc.field in ("to", "event") else "body"
            problems = [Problem(field, exc.reason)]
            status = 422
        except NotFound as exc:
            problems = [Problem("contact", exc.detail)]
            status = 422
        except ConveyorError as exc:  # too many tests
            problems = [Problem("to", exc.detail)]
            status = exc.status
    return _editor(
        request,
        member,
        info,
        form=shown,
        errors=errors_of(problems),
        status=status if problems else 200,
        sent=sent,
        contact=contact,
        to=to,
        event=str(form.get("event", "")),
    )


@router.get("/{key}/versions")
async def versions(
    request: Request, member: Member, key: str, a: int | None = None, b: int | None = None
) -> Response:
    conveyor = conveyor_of(request)
    info = conveyor.templates.get(member.workspace, key)
    listed = conveyor.templates.versions(member.workspace, key)
    by_version = {v["version"]: v for v in listed}
    b = b if b in by_version else info.version
    a = a if a in by_version else max(1, b - 1)
    before, after = _as_text(by_version[a]["content"]), _as_text(by_version[b]["content"])
    lines = unified_rows(before, after, f"version {a}", f"version {b}")
    return render(
        request,
        "templates/versions.html",
        member,
        section="templates",
        title=f"{info.name}: versions",
        info=info,
        versions=listed,
        a=a,
        b=b,
        diff=lines,
    )


# --- helpers ---------------------------------------------------------------------------------


def _as_text(content: dict[str, Any]) -> list[str]:
    """A version's parts, each under its name, for a line-by-line difference."""
    lines: list[str] = []
    order = ["subject", "preheader", "html", "mjml", "text", "from_name", "reply_to"]
    for part in sorted(content, key=lambda k: order.index(k) if k in order else len(order)):
        value = content[part]
        lines.append(f"## {part}")
        lines.extend(value.splitlines() if isinstance(value, str) else [repr(value)])
    return lines


def _frame(
    request: Request, member: SignedIn, channel: str, content: dict[str, Any], form: Any
) -> Response:
    editor = conveyor_of(request).template_editor
    contact = str(form.get("contact", ""))
    problems = editor.check(channel, content)
    if problems:
        return _frame_note("Fix the errors shown beside the editor to see the preview.", 200)
    try:
        done = editor.render(member.workspace, channel, content, contact, event_of(form))
    except ConveyorError as exc:
        return _frame_note(exc.detail, 200)
    if done.html is None:
        return _frame_note(done.text, 200, pre=True)
    return HTMLResponse(done.html, headers=FRAME_HEADERS)


def _frame_note(text: str, status: int, *, pre: bool = False) -> Response:
    from html import escape

    tag = "pre" if pre else "p"
    body = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Preview</title></head>'
        '<body style="font-family:system-ui,sans-serif;color:#556070;margin:24px">'
        f'<{tag} style="white-space:pre-wrap">{escape(text)}</{tag}></body></html>'
    )
    return HTMLResponse(body, status_code=status, headers=FRAME_HEADERS)
