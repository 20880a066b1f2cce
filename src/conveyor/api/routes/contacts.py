"""Admin endpoints for contacts: CRUD, lookup, tags, list subscriptions, score, history, import."""

from __future__ import annotations

import codecs
import io
import tempfile
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import (
    ContactIn,
    ContactOut,
    ContactPage,
    ContactPatch,
    ContactPath,
    EventOut,
    EventPage,
    ImportOut,
    ScoreIn,
    Status,
    SubscriptionIn,
    TagsIn,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.workspaces import Workspace
from conveyor.services.contacts import ContactChange
from conveyor.services.imports import parse_mapping

router = APIRouter(prefix="/contacts", tags=["contacts"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
ContactId = Annotated[int, "contact id"]


@router.post("", status_code=201, response_model=ContactOut)
def create_contact(body: ContactIn, workspace: Admin, request: Request) -> ContactOut:
    """Create a contact. 409 when its email or external_id belongs to another contact."""
    change = ContactChange(
        values=body.values(), add_tags=body.tags, lists=dict(body.lists), score=body.score
    )
    return ContactOut.of(conveyor_of(request).contacts.create(workspace, change))


@router.get("", response_model=ContactPage)
def list_contacts(
    workspace: Admin,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    email: str | None = None,
    tag: str | None = None,
    list: Annotated[str | None, Query(description="list key")] = None,  # noqa: A002
    status: Annotated[Status | None, Query(description="with list: only this status")] = None,
) -> ContactPage:
    items, next_cursor = conveyor_of(request).contacts.page(
        workspace,
        cursor=cursor,
        limit=limit,
        email=email,
        tag=tag,
        list_key=list,
        list_status=status,
    )
    return ContactPage(items=[ContactOut.of(c) for c in items], next_cursor=next_cursor)


@router.get("/lookup", response_model=ContactOut)
def lookup_contact(
    workspace: Admin,
    request: Request,
    external_id: str | None = None,
    email: str | None = None,
    anonymous_id: str | None = None,
) -> ContactOut:
    """Find a contact by exactly one of: your app's user id, email, or an anonymous id."""
    return ContactOut.of(
        conveyor_of(request).contacts.lookup(
            workspace, external_id=external_id, email=email, anonymous_id=anonymous_id
        )
    )


@router.post(
    "/import",
    response_model=ImportOut,
    openapi_extra={
        "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}
    },
)
async def import_contacts(
    workspace: Admin,
    request: Request,
    list: Annotated[
        str | None, Query(description="subscribe every row to this list (created if missing)")
    ] = None,  # noqa: A002
    status: Status = "subscribed",
    map: Annotated[list[str], Query(description="COLUMN=field, repeatable")] = [],  # noqa: A002, B006
    dry_run: Annotated[bool, Query(description="report what would change; write nothing")] = False,
) -> ImportOut:
    """Import contacts from a CSV body (first line names the columns). Rows match existing
    contacts by external_id, then email; empty cells change nothing; bad rows come back with
    their line number; importing the same file again changes nothing."""
    mapping = parse_mapping(map)
    # Spooled to a file as it arrives, never held whole: a 50 MB CSV in memory was 50 MB of
    # bytes, a copy, then up to 200 MB of text.
    with tempfile.TemporaryFile() as spool:
        utf8 = codecs.getincrementaldecoder("utf-8")()
        try:
            async for chunk in request.stream():
                utf8.decode(chunk)
                spool.write(chunk)
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InvalidInput("body", "the CSV must be UTF-8") from None
        spool.seek(0)
        text = io.TextIOWrapper(spool, encoding="utf-8-sig", newline="")
        try:
            report = await run_in_threadpool(
                conveyor_of(request).imports.run,
                workspace,
                text,
                mapping=mapping,
                list_key=list,
                status=status,
                dry_run=dry_run,
            )
        finally:
            text.detach()  # the spool is closed by its own `with`
    return ImportOut(**report.as_dict())


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
)
def export_contacts(
    workspace: Admin,
    request: Request,
    format: Annotated[Literal["csv", "ndjson"], Query(description="csv or ndjson")] = "csv",  # noqa: A002
) -> StreamingResponse:
    """Every contact: standard attributes, score, tags, each list's status, created_at and
    every custom field. The CSV imports back into the same workspace without changes."""
    chunks = conveyor_of(request).contacts.export(workspace, format)
    media = "text/csv" if format == "csv" else "application/x-ndjson"
    name = f"contacts.{format}"
    return StreamingResponse(
        chunks, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


@router.get("/{contact_id}", response_model=ContactOut)
def get_contact(contact_id: ContactPath, workspace: Admin, request: Request) -> ContactOut:
    return ContactOut.of(conveyor_of(request).contacts.get(workspace, contact_id))


@router.patch("/{contact_id}", response_model=ContactOut)
def update_contact(
    contact_id: ContactPath, body: ContactPatch, workspace: Admin, request: Request
) -> ContactOut:
    """Change only what is given; `null` clears a value."""
    change = ContactChange(
        values=body.values(),
        add_tags=body.tags + body.add_tags,
        remove_tags=body.remove_tags,
        lists=dict(body.lists),
        score=body.score,
        score_delta=body.score_delta,
    )
    return ContactOut.of(conveyor_of(request).contacts.update(workspace, contact_id, change))


@router.delete("/{contact_id}", status_code=204)
def delete_contact(contact_id: ContactPath, workspace: Admin, request: Request) -> Response:
    """Delete the contact with its tags, subscriptions and event history (right to erasure)."""
    conveyor_of(request).contacts.delete(workspace, contact_id)
    return Response(status_code=204)


@router.post("/{contact_id}/tags", response_model=ContactOut)
def add_tags(
    contact_id: ContactPath, body: TagsIn, workspace: Admin, request: Request
) -> ContactOut:
    change = ContactChange(add_tags=body.tags)
    return ContactOut.of(conveyor_of(request).contacts.update(workspace, contact_id, change))


@router.delete("/{contact_id}/tags/{tag}", response_model=ContactOut)
def remove_tag(contact_id: ContactPath, tag: str, workspace: Admin, request: Request) -> ContactOut:
    change = ContactChange(remove_tags=[tag])
    return ContactOut.of(conveyor_of(request).contacts.update(workspace, contact_id, change))


@router.put("/{contact_id}/lists/{list_key}", response_model=ContactOut)
def set_subscription(
    contact_id: ContactPath, list_key: str, body: SubscriptionIn, workspace: Admin, request: Request
) -> ContactOut:
    """Subscribing to a double opt-in list sets `unconfirmed` until the contact confirms."""
    change = ContactChange(lists={list_key: body.status})
    return ContactOut.of(conveyor_of(request).contacts.update(workspace, contact_id, change))


@router.post("/{contact_id}/score", response_model=ContactOut)
def change_score(
    contact_id: ContactPath, body: ScoreIn, workspace: Admin, request: Request
) -> ContactOut:
    """Set the lead score (`score`) or add to it (`delta`)."""
    if (body.delta is None) == (body.score is None):
        raise InvalidInput("delta", "give either delta or score")
    change = ContactChange(score=body.score, score_delta=body.delta)
    return ContactOut.of(conveyor_of(request).contacts.update(workspace, contact_id, change))


@router.get("/{contact_id}/events", response_model=EventPage)
def contact_events(
    contact_id: ContactPath,
    workspace: Admin,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    name: str | None = None,
) -> EventPage:
    """The contact's history, newest first: its calls and every change to it."""
    rows, next_cursor = conveyor_of(request).contacts.events(
        workspace, contact_id, cursor=cursor, limit=limit, name=name
    )
    return EventPage(items=[EventOut.of(r) for r in rows], next_cursor=next_cursor)
