"""Editing a live automation: where its contacts are, and publishing a new version that moves
them as the marketer chose (the rest stay on their version)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of, principal
from conveyor.api.routes.automations import AutomationOut
from conveyor.api.schemas import Strict
from conveyor.domain.automations.moves import Move
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["automations"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
NODE = Field(min_length=1, max_length=64)


class PositionOut(BaseModel):
    version: int
    node: str
    type: str
    contacts: int = Field(description="active runs at this node of this version")
    change: str = Field(
        description="what the live version did to this node: removed, changed, same"
    )


class PositionsOut(BaseModel):
    automation: str
    version: int = Field(description="the live version")
    inside: int = Field(description="contacts inside now, on any version")
    positions: list[PositionOut]


class MoveIn(Strict):
    from_version: int = Field(ge=1, le=2**31 - 1)
    from_node: str = NODE
    to_node: str = NODE


class PublishIn(Strict):
    definition: dict[str, Any]
    moves: list[MoveIn] = Field(default_factory=list, max_length=500)
    base_version: int = Field(
        ge=1, le=2**31 - 1, description="the live version the change was reviewed against"
    )


class MovedOut(BaseModel):
    from_version: int
    from_node: str
    to_node: str
    contacts: int


class PublishedOut(AutomationOut):
    result: str = Field(description="new version, or unchanged")
    moved: list[MovedOut]
    total_moved: int


@router.get("/automations/{key}/positions", response_model=PositionsOut)
def automation_positions(key: str, workspace: Admin, request: Request) -> PositionsOut:
    """Per version and node: the contacts inside there now (what a publish may move)."""
    version, found = conveyor_of(request).live_edits.positions(workspace, key)
    return PositionsOut(
        automation=key,
        version=version,
        inside=sum(p.count for p in found),
        positions=[
            PositionOut(
                version=p.version, node=p.node, type=p.type, contacts=p.count, change=p.change
            )
            for p in found
        ],
    )


@router.post("/automations/{key}/publish", response_model=PublishedOut)
def publish_automation(
    key: str, body: PublishIn, workspace: Admin, request: Request
) -> PublishedOut:
    """Publish `definition` as the new live version and move contacts as `moves` say (every
    active run at `from_node` of `from_version` goes to `to_node` of the new version, due at
    once; a wait there starts over). Contacts at nodes not named stay on their version. 409
    when another version went live after `base_version`."""
    who = principal(request)
    done = conveyor_of(request).live_edits.publish(
        workspace,
        key,
        body.definition,
        [Move(m.from_version, m.from_node, m.to_node) for m in body.moves],
        body.base_version,
        by=f"API key {who.key_id}",
    )
    return PublishedOut(
        **AutomationOut.of(done.info).model_dump(),
        result=done.result,
        moved=[
            MovedOut(
                from_version=m.from_version, from_node=m.from_node, to_node=m.to_node, contacts=n
            )
            for m, n in done.moved
        ],
        total_moved=done.total_moved,
    )
