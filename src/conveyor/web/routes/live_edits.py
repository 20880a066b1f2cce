"""Publishing a new version of a live automation from the panel: paste (or post, from the
builder's review) its YAML, review the diff and where contacts are, choose per node whether
they stay on their version or move, and publish."""

from __future__ import annotations

from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.automations.moves import Move
from conveyor.domain.errors import Conflict, InvalidInput
from conveyor.domain.permissions import Action
from conveyor.services.live_edits import Review, yaml_text
from conveyor.services.signin import SignedIn
from conveyor.web.pages import base, diff_rows, redirect, render
from conveyor.web.session import acting, allowed, conveyor_of, signed_in

router = APIRouter(prefix="/automations")
Member = Annotated[SignedIn, Depends(signed_in)]
MAX_TEXT = 256 * 1024


@router.get("/{key}/publish")
async def publish_page(request: Request, member: Member, key: str) -> Response:
    allowed(member, Action.MANAGE_AUTOMATIONS)
    conveyor = conveyor_of(request)
    info = conveyor.automations.get(member.workspace, key)
    return _edit(request, member, key, yaml_text(info.definition))


@router.post("/{key}/publish")
async def publish(request: Request, key: str) -> Response:
    member = await acting(request, Action.MANAGE_AUTOMATIONS)
    form = await request.form()
    text = str(form.get("definition") or "")
    live_edits = conveyor_of(request).live_edits
    try:
        review = live_edits.review(member.workspace, key, _load(text))
    except InvalidInput as exc:
        return _edit(request, member, key, text, errors={"definition": str(exc)}, status=422)
    if form.get("confirm") != "1":
        return _review(request, member, review, text)
    chosen = {
        name: str(value)
        for name, value in form.multi_items()
        if name.startswith("move:") and str(value)
    }
    moves, fields = [], []
    for name, target in chosen.items():
        _, version, node = name.split(":", 2)
        if not version.isdigit():
            continue
        moves.append(Move(int(version), node, target))
        fields.append(name)
    base_version = str(form.get("base_version") or "")
    try:
        done = live_edits.publish(
            member.workspace,
            key,
            review.definition,
            moves,
            int(base_version) if base_version.isdigit() else 0,
            by=member.email,
        )
    except Conflict as exc:
        fresh = live_edits.review(member.workspace, key, review.definition)
        return _review(request, member, fresh, text, problem=exc.detail, status=409, chosen=chosen)
    except InvalidInput as exc:
        errors = {}
        for error in exc.errors:  # moves.N.field → the select of the Nth move
            parts = error.field.split(".")
            if parts[0] == "moves" and len(parts) > 1 and parts[1].isdigit():
                errors[fields[int(parts[1])]] = error.detail
            else:
                errors["definition"] = f"{error.field}: {error.detail}"
        return _review(request, member, review, text, errors=errors, status=422, chosen=chosen)
    if done.result == "unchanged" and not done.total_moved:
        flash = f"Nothing to publish: version {done.version} is live already."
    else:
        what = f"Published version {done.version}." if done.result != "unchanged" else ""
        if done.total_moved:
            count = done.total_moved
            parts = ", ".join(f"{n} from {m.from_node} to {m.to_node}" for m, n in done.moved)
            moved = f"Moved {count} contact{'s' if count != 1 else ''} ({parts})."
        else:
            moved = "Contacts inside stay on their versions."
        flash = f"{what} {moved}".strip()
    return redirect(f"{base()}/automations/{key}", flash)


def _load(text: str) -> Any:
    if not text.strip():
        raise InvalidInput("definition", "paste the automation's YAML")
    if len(text) > MAX_TEXT:
        raise InvalidInput("definition", f"at most {MAX_TEXT // 1024} KiB of YAML")
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InvalidInput(
            "definition", f"not YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None


def _edit(
    request: Request,
    member: SignedIn,
    key: str,
    text: str,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    conveyor = conveyor_of(request)
    info = conveyor.automations.get(member.workspace, key)
    version, positions = conveyor.live_edits.positions(member.workspace, key)
    return render(
        request,
        "automations/publish.html",
        member,
        status=status,
        section="automations",
        title=f"{info.name}: publish a new version",
        key=key,
        name=info.name,
        live_version=version,
        positions=positions,
        text=text,
        review=None,
        errors=errors or {},
    )


def _review(
    request: Request,
    member: SignedIn,
    review: Review,
    text: str,
    *,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
    chosen: dict[str, str] | None = None,
) -> Response:
    lines = diff_rows(review.diff.splitlines())
    return render(
        request,
        "automations/publish.html",
        member,
        status=status,
        section="automations",
        title=f"{review.name}: review version {review.new_version}",
        key=review.key,
        name=review.name,
        live_version=review.live_version,
        positions=review.positions,
        text=text,
        review=review,
        diff=lines,
        errors=errors or {},
        problem=problem,
        chosen=chosen or {},
    )
