"""Admin endpoints for the team: the workspace's members and the owners of its contacts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.crm_schemas import MemberIn, MemberOut, MemberPatch, MemberPath, OwnerIn
from conveyor.api.schemas import ContactPath
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["team"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


@router.get("/members", response_model=list[MemberOut])
def list_members(workspace: Admin, request: Request) -> list[dict]:
    return conveyor_of(request).crm.members(workspace)


@router.post("/members", status_code=201, response_model=MemberOut)
def add_member(body: MemberIn, workspace: Admin, request: Request) -> dict:
    """A member of the team (no login yet): an owner of contacts and deals, an assignee."""
    return conveyor_of(request).crm.add_member(workspace, body.name, body.email, body.role)


@router.get("/members/{member_id}", response_model=MemberOut)
def get_member(member_id: MemberPath, workspace: Admin, request: Request) -> dict:
    return conveyor_of(request).crm.member(workspace, member_id)


@router.patch("/members/{member_id}", response_model=MemberOut)
def change_member(
    member_id: MemberPath, body: MemberPatch, workspace: Admin, request: Request
) -> dict:
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return conveyor_of(request).crm.change_member(workspace, member_id, changes)


@router.delete("/members/{member_id}", status_code=204)
def remove_member(member_id: MemberPath, workspace: Admin, request: Request) -> Response:
    """Their deals and tasks stay, without owner or assignee."""
    conveyor_of(request).crm.remove_member(workspace, member_id)
    return Response(status_code=204)


@router.get("/contacts/{contact_id}/owner", response_model=MemberOut | None)
def get_owner(contact_id: ContactPath, workspace: Admin, request: Request) -> dict | None:
    return conveyor_of(request).crm.owner(workspace, contact_id)


@router.put("/contacts/{contact_id}/owner", response_model=MemberOut | None)
def set_owner(
    contact_id: ContactPath, body: OwnerIn, workspace: Admin, request: Request
) -> dict | None:
    """Records `contact.owner_changed` when it changes."""
    return conveyor_of(request).crm.set_owner(workspace, contact_id, body.member)
