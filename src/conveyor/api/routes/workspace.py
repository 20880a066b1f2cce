"""Admin endpoints for the workspace itself: settings, API keys, and the event log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import (
    EventOut,
    EventPage,
    KeyIn,
    KeyOut,
    NewKeyOut,
    SettingsPatch,
    WorkspaceOut,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import normalize_timezone
from conveyor.domain.reports import check_attribution
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["workspace"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


@router.get("/workspace", response_model=WorkspaceOut)
def get_workspace(workspace: Admin) -> WorkspaceOut:
    return WorkspaceOut(name=workspace.name, settings=workspace.settings)


@router.patch("/workspace/settings", response_model=WorkspaceOut)
def update_settings(body: SettingsPatch, workspace: Admin, request: Request) -> WorkspaceOut:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("default_country"):
        changes["default_country"] = changes["default_country"].upper()
    if changes.get("timezone"):
        try:
            changes["timezone"] = normalize_timezone(changes["timezone"])
        except InvalidInput as exc:
            raise InvalidInput("timezone", exc.reason) from None
    if changes.get("attribution") is not None:
        changes["attribution"] = check_attribution(changes["attribution"])
    updated = conveyor_of(request).workspaces.update_settings(workspace, changes)
    return WorkspaceOut(name=updated.name, settings=updated.settings)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(workspace: Admin, request: Request) -> list[KeyOut]:
    return [
        KeyOut(
            id=k.id,
            kind=k.kind,
            name=k.name,
            prefix=k.prefix,
            created_at=k.created_at,
            revoked_at=k.revoked_at,
        )
        for k in conveyor_of(request).workspaces.keys(workspace)
    ]


@router.post("/keys", status_code=201, response_model=NewKeyOut)
def create_key(body: KeyIn, workspace: Admin, request: Request) -> NewKeyOut:
    """A new key. The response is the only time the key is shown; only its hash is stored."""
    key = conveyor_of(request).workspaces.create_key(workspace, body.kind, body.name)
    return NewKeyOut(id=key.id, kind=key.kind, name=key.name, key=key.secret)


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)], workspace: Admin, request: Request
) -> Response:
    conveyor_of(request).workspaces.revoke_key(workspace, key_id)
    return Response(status_code=204)


@router.get("/events", response_model=EventPage)
def list_events(
    workspace: Admin,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    name: str | None = None,
) -> EventPage:
    """The workspace's event log, newest first."""
    rows, next_cursor = conveyor_of(request).contacts.events(
        workspace, None, cursor=cursor, limit=limit, name=name
    )
    return EventPage(items=[EventOut.of(r) for r in rows], next_cursor=next_cursor)
