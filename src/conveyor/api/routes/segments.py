"""Admin endpoints for segments: definitions, audience counts, members, CSV export, explanations."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, ContactOut, ContactPage, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.segments import Segment

router = APIRouter(prefix="/segments", tags=["segments"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class SegmentIn(Strict):
    key: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=255)
    condition: dict[str, Any] = Field(description="A condition tree; see the README")


class SegmentPatch(Strict):
    name: str | None = Field(default=None, max_length=255)
    condition: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    key: str
    name: str
    condition: dict[str, Any]
    time_based: bool = Field(
        description="Membership can change with time alone; swept periodically"
    )

    @classmethod
    def of(cls, segment: Segment) -> SegmentOut:
        return cls(
            key=segment.key,
            name=segment.name,
            condition=segment.definition,
            time_based=segment.time_based,
        )


class ConditionIn(Strict):
    condition: dict[str, Any]


class CountOut(BaseModel):
    count: int


@router.get("", response_model=list[SegmentOut])
def list_segments(workspace: Admin, request: Request) -> list[SegmentOut]:
    return [SegmentOut.of(s) for s in conveyor_of(request).segments.all(workspace)]


@router.post("", status_code=201, response_model=SegmentOut)
def create_segment(body: SegmentIn, workspace: Admin, request: Request) -> SegmentOut:
    """Save a condition as a segment; its members are computed now and kept up to date."""
    segments = conveyor_of(request).segments
    return SegmentOut.of(segments.save(workspace, body.key, body.name, body.condition, create=True))


@router.post("/count", response_model=CountOut)
def count_condition(body: ConditionIn, workspace: Admin, request: Request) -> CountOut:
    """Count who meets a condition without saving it (for trying a definition)."""
    return CountOut(count=conveyor_of(request).segments.count(workspace, raw=body.condition))


@router.get("/{key}", response_model=SegmentOut)
def get_segment(key: str, workspace: Admin, request: Request) -> SegmentOut:
    return SegmentOut.of(conveyor_of(request).segments.get(workspace, key))


@router.patch("/{key}", response_model=SegmentOut)
def update_segment(key: str, body: SegmentPatch, workspace: Admin, request: Request) -> SegmentOut:
    segments = conveyor_of(request).segments
    return SegmentOut.of(segments.save(workspace, key, body.name, body.condition, create=False))


@router.delete("/{key}", status_code=204)
def delete_segment(key: str, workspace: Admin, request: Request) -> Response:
    """Refused (409, naming them) while other segments refer to this one."""
    conveyor_of(request).segments.delete(workspace, key)
    return Response(status_code=204)


@router.get("/{key}/count", response_model=CountOut)
def count_segment(key: str, workspace: Admin, request: Request) -> CountOut:
    return CountOut(count=conveyor_of(request).segments.count(workspace, key=key))


@router.get("/{key}/members", response_model=ContactPage)
def segment_members(
    key: str,
    workspace: Admin,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ContactPage:
    items, next_cursor = conveyor_of(request).segments.members(
        workspace, key, cursor=cursor, limit=limit
    )
    return ContactPage(items=[ContactOut.of(c) for c in items], next_cursor=next_cursor)


@router.get("/{key}/export", response_class=StreamingResponse)
def export_segment(key: str, workspace: Admin, request: Request) -> StreamingResponse:
    """Every member as CSV (standard attributes, score, tags, custom fields)."""
    segments = conveyor_of(request).segments
    segments.get(workspace, key)  # 404 before the stream starts
    return StreamingResponse(
        segments.export_csv(workspace, key),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{key}.csv"'},
    )


@router.get("/{key}/explain")
def explain_segment(
    key: str,
    workspace: Admin,
    request: Request,
    contact: Annotated[int, Query(ge=1, le=MAX_ID, description="contact id")],
) -> dict[str, Any]:
    """Whether the contact is in the segment now, and why: each predicate with the values seen."""
    verdict = conveyor_of(request).segments.explain(workspace, contact, key=key)
    return {
        "contact": contact,
        "segment": key,
        "member": verdict.ok,
        "explanation": verdict.as_dict(),
    }
