"""Admin endpoints for deals and their notes. Every change is an event in the contact's log
(`deal.created`, `deal.stage_changed`, `deal.won`, …)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.crm_schemas import (
    MAX_SMALL,
    DealIn,
    DealOut,
    DealPatch,
    DealPath,
    DealStatus,
    NoteIn,
)
from conveyor.api.schemas import MAX_ID
from conveyor.domain.workspaces import Workspace
from conveyor.services.crm.writer import DealDraft

router = APIRouter(tags=["deals"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
Id = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Member = Annotated[int | None, Query(ge=1, le=MAX_SMALL)]


@router.get("/deals", response_model=list[DealOut])
def list_deals(
    workspace: Admin,
    request: Request,
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
    status: DealStatus | None = None,
    contact: Id = None,
    owner: Member = None,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="ids after this one")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    return conveyor_of(request).crm.deals(
        workspace, pipeline=pipeline, status=status, contact_id=contact, owner_id=owner,
        after=after, limit=limit,
    )  # fmt: skip


@router.post("/deals", status_code=201, response_model=DealOut)
def create_deal(body: DealIn, workspace: Admin, request: Request) -> dict[str, Any]:
    values = body.model_dump(exclude={"contacts"})
    if body.expected_close is not None:
        values["expected_close"] = body.expected_close.isoformat()
    draft = DealDraft(values, list(body.contacts))
    return conveyor_of(request).crm.create_deal(workspace, draft)


@router.get("/deals/{deal_id}", response_model=DealOut)
def get_deal(deal_id: DealPath, workspace: Admin, request: Request) -> dict[str, Any]:
    """The deal with its notes."""
    return conveyor_of(request).crm.deal(workspace, deal_id)


@router.patch("/deals/{deal_id}", response_model=DealOut)
def update_deal(
    deal_id: DealPath, body: DealPatch, workspace: Admin, request: Request
) -> dict[str, Any]:
    """Move its stage, change value, owner, status (won/lost with a reason), …"""
    changes = body.model_dump(exclude_unset=True, exclude={"contacts"})
    if changes.get("expected_close") is not None:
        changes["expected_close"] = changes["expected_close"].isoformat()
    if "status" in changes and changes["status"] is None:
        del changes["status"]
    contacts = list(body.contacts) if body.contacts is not None else None
    return conveyor_of(request).crm.update_deal(workspace, deal_id, changes, contacts)


@router.delete("/deals/{deal_id}", status_code=204)
def delete_deal(deal_id: DealPath, workspace: Admin, request: Request) -> Response:
    conveyor_of(request).crm.remove_deal(workspace, deal_id)
    return Response(status_code=204)


@router.post("/deals/{deal_id}/notes", status_code=201)
def add_note(deal_id: DealPath, body: NoteIn, workspace: Admin, request: Request) -> dict[str, Any]:
    return conveyor_of(request).crm.add_note(workspace, deal_id, body.body, body.author_id)
