"""Admin endpoints for bulk actions on an audience: preview the count, start a job (with an
explicit confirmation), follow its progress, cancel it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.bulk import BulkJobInfo

router = APIRouter(prefix="/bulk-jobs", tags=["bulk jobs"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
JobPath = Annotated[int, Path(ge=1, le=MAX_ID, description="bulk job id")]
Action = Literal["enroll", "tag", "untag", "subscribe", "unsubscribe", "delete"]


class BulkPreviewIn(Strict):
    action: Action
    audience: dict[str, Any] = Field(
        description="{lists, segments, tags, exclude: {lists, segments, tags}}"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="{automation} | {tag} | {list}"
    )


class BulkJobIn(BulkPreviewIn):
    confirm: bool = Field(default=False, description="true: go ahead (after the preview)")


class BulkCountOut(BaseModel):
    action: str
    count: int


class BulkJobOut(BaseModel):
    id: int
    action: str
    audience: dict[str, Any]
    params: dict[str, Any]
    status: str = Field(description="queued, running, done, failed, cancelled")
    total: int = Field(description="the audience counted when the job was confirmed")
    done: int
    outcomes: dict[str, int] = Field(description="what the contacts done so far got, counted")
    error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, info: BulkJobInfo) -> BulkJobOut:
        return cls(**info.__dict__)


@router.post("/preview", response_model=BulkCountOut)
def preview_bulk_job(body: BulkPreviewIn, workspace: Admin, request: Request) -> BulkCountOut:
    """How many contacts the action would touch now. Changes nothing."""
    count = conveyor_of(request).bulk_jobs.preview(
        workspace, body.action, body.audience, body.params
    )
    return BulkCountOut(action=body.action, count=count)


@router.post("", status_code=201, response_model=BulkJobOut)
def create_bulk_job(body: BulkJobIn, workspace: Admin, request: Request) -> BulkJobOut:
    """Start the job (422 naming `confirm`, with the count, unless `confirm: true`)."""
    info = conveyor_of(request).bulk_jobs.create(
        workspace, body.action, body.audience, body.params, confirm=body.confirm
    )
    return BulkJobOut.of(info)


@router.get("", response_model=list[BulkJobOut])
def list_bulk_jobs(workspace: Admin, request: Request) -> list[BulkJobOut]:
    return [BulkJobOut.of(j) for j in conveyor_of(request).bulk_jobs.all(workspace)]


@router.get("/{job_id}", response_model=BulkJobOut)
def get_bulk_job(job_id: JobPath, workspace: Admin, request: Request) -> BulkJobOut:
    return BulkJobOut.of(conveyor_of(request).bulk_jobs.get(workspace, job_id))


@router.post("/{job_id}/cancel", response_model=BulkJobOut)
def cancel_bulk_job(job_id: JobPath, workspace: Admin, request: Request) -> BulkJobOut:
    """Stop after the chunk in progress; what is done stays done."""
    return BulkJobOut.of(conveyor_of(request).bulk_jobs.cancel(workspace, job_id))
