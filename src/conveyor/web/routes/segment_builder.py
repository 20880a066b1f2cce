"""The segment builder: a page that edits a condition as nested AND/OR/NOT groups of predicates
(segment-builder.js, forms built from the condition JSON Schema) and the small JSON endpoints it
calls — the workspace's vocabulary, a live count (the segments service's count: the same SQL as
membership), "explain for contact X", and save. Bad input answers problem+json naming the field.

Its router is included before the segments pages so `/segments/new` is not read as a key."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from conveyor.domain.errors import ConveyorError, InvalidInput
from conveyor.domain.permissions import Action, can
from conveyor.services.signin import SignedIn
from conveyor.web.json_calls import answer, json_call, problem
from conveyor.web.pages import base, render
from conveyor.web.routes.segments import _find
from conveyor.web.session import conveyor_of, signed_in

router = APIRouter(prefix="/segments")
Member = Annotated[SignedIn, Depends(signed_in)]


def _condition(body: dict[str, Any]) -> Any:
    if "condition" not in body:
        raise InvalidInput("condition", "add a condition first")
    return body["condition"]


@router.get("/new")
async def new_segment(request: Request, member: Member) -> Response:
    return _page(request, member, None)


@router.get("/vocabulary.json")
async def vocabulary(request: Request, member: Member) -> Response:
    return answer(conveyor_of(request).segments.vocabulary(member.workspace))


@router.post("/count.json")
async def count(request: Request) -> Response:
    try:
        member, body = await json_call(request, Action.VIEW)
        segments = conveyor_of(request).segments
        try:
            found = segments.count(member.workspace, raw=_condition(body))
        except InvalidInput as exc:
            raise exc.prefixed("condition") if exc.field != "condition" else exc from None
    except ConveyorError as exc:
        return problem(exc)
    return answer({"count": found})


@router.post("/explain.json")
async def explain(request: Request) -> Response:
    try:
        member, body = await json_call(request, Action.VIEW)
        given = body.get("contact")
        if not isinstance(given, str | int) or not str(given).strip():
            raise InvalidInput("contact", "a contact id, email or external id")
        try:
            who = _find(request, member, str(given).strip()[:255])
        except ConveyorError as exc:
            raise InvalidInput("contact", exc.detail) from None
        condition = _condition(body)
        try:
            verdict = conveyor_of(request).segments.explain(member.workspace, who.id, raw=condition)
        except InvalidInput as exc:
            raise exc.prefixed("condition") if exc.field != "condition" else exc from None
    except ConveyorError as exc:
        return problem(exc)
    label = " ".join(p for p in (who.first_name, who.last_name) if p) or who.email or str(who.id)
    return answer(
        {
            "contact": {"id": who.id, "label": label, "email": who.email},
            "member": verdict.ok,
            "explanation": verdict.as_dict(),
        }
    )


@router.post("/save.json")
async def save(request: Request) -> Response:
    """Create (`create: true`) or change a segment; nothing is saved unless all of it is valid."""
    try:
        member, body = await json_call(request, Action.MANAGE_AUTOMATIONS)
        key, name = body.get("key"), body.get("name")
        if not isinstance(key, str):
            raise InvalidInput("key", "a segment key is 1-64 of a-z, 0-9, - and _")
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name", "a name is text")
        create = body.get("create") is True
        condition = _condition(body)
        segment = conveyor_of(request).segments.save(
            member.workspace, key.strip(), name, condition, create=create
        )
    except ConveyorError as exc:
        return problem(exc)
    return answer(
        {"key": segment.key, "name": segment.name, "url": f"{base()}/segments/{segment.key}"},
        HTTPStatus.CREATED if create else HTTPStatus.OK,
    )


@router.get("/{key}/edit")
async def edit_segment(request: Request, member: Member, key: str) -> Response:
    segment = conveyor_of(request).segments.get(member.workspace, key)
    return _page(request, member, segment)


def _page(request: Request, member: SignedIn, segment: Any) -> Response:
    return render(
        request,
        "segments/builder.html",
        member,
        section="segments",
        title=f"Edit {segment.name}" if segment else "New segment",
        segment=segment,
        may_save=can(member.role, Action.MANAGE_AUTOMATIONS),
    )
