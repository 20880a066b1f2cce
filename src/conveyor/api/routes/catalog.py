"""Admin endpoints for the workspace's custom fields and lists."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import FieldIn, FieldOut, FieldPatch, ListIn, ListOut, ListPatch
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["catalog"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


@router.get("/fields", response_model=list[FieldOut])
def list_fields(workspace: Admin, request: Request) -> list[FieldOut]:
    return [FieldOut.of(d) for d in conveyor_of(request).catalog.fields(workspace)]


@router.post("/fields", status_code=201, response_model=FieldOut)
def declare_field(body: FieldIn, workspace: Admin, request: Request) -> FieldOut:
    """Declare a custom field; values sent for it are then validated and coerced to its type."""
    definition = conveyor_of(request).catalog.declare_field(
        workspace, body.key, body.type, body.label, body.choices
    )
    return FieldOut.of(definition)


@router.get("/fields/{key}", response_model=FieldOut)
def get_field(key: str, workspace: Admin, request: Request) -> FieldOut:
    return FieldOut.of(conveyor_of(request).catalog.field(workspace, key))


@router.patch("/fields/{key}", response_model=FieldOut)
def update_field(key: str, body: FieldPatch, workspace: Admin, request: Request) -> FieldOut:
    return FieldOut.of(
        conveyor_of(request).catalog.update_field(workspace, key, body.label, body.choices)
    )


@router.delete("/fields/{key}", status_code=204)
def delete_field(key: str, workspace: Admin, request: Request) -> Response:
    conveyor_of(request).catalog.delete_field(workspace, key)
    return Response(status_code=204)


def _list_out(info, counts) -> ListOut:  # type: ignore[no-untyped-def]
    return ListOut(key=info.key, name=info.name, double_opt_in=info.double_opt_in, counts=counts)


@router.get("/lists", response_model=list[ListOut])
def list_lists(workspace: Admin, request: Request) -> list[ListOut]:
    return [_list_out(i, c) for i, c in conveyor_of(request).catalog.lists(workspace)]


@router.post("/lists", status_code=201, response_model=ListOut)
def create_list(body: ListIn, workspace: Admin, request: Request) -> ListOut:
    info = conveyor_of(request).catalog.create_list(
        workspace, body.key, body.name, body.double_opt_in
    )
    return _list_out(info, {})


@router.get("/lists/{key}", response_model=ListOut)
def get_list(key: str, workspace: Admin, request: Request) -> ListOut:
    return _list_out(*conveyor_of(request).catalog.list(workspace, key))


@router.patch("/lists/{key}", response_model=ListOut)
def update_list(key: str, body: ListPatch, workspace: Admin, request: Request) -> ListOut:
    catalog = conveyor_of(request).catalog
    catalog.update_list(workspace, key, body.name, body.double_opt_in)
    return _list_out(*catalog.list(workspace, key))


@router.delete("/lists/{key}", status_code=204)
def delete_list(key: str, workspace: Admin, request: Request) -> Response:
    """Delete a list and every subscription to it."""
    conveyor_of(request).catalog.delete_list(workspace, key)
    return Response(status_code=204)
