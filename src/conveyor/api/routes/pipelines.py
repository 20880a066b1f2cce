"""Admin endpoints for pipelines: their stages, a board per pipeline, the forecast, and the
custom deal fields."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.crm_schemas import (
    AppliedPipeline,
    DealFieldIn,
    PipelineBody,
    PipelineIn,
    PipelineOut,
)
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["pipelines"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
KeyPath = Annotated[str, Path(max_length=64, description="pipeline key")]


def _raw(key: str, body: PipelineBody) -> dict[str, Any]:
    return {
        "key": key,
        **({"name": body.name} if body.name else {}),
        "stages": [s.model_dump() for s in body.stages],
    }


@router.get("/pipelines", response_model=list[PipelineOut])
def list_pipelines(workspace: Admin, request: Request) -> list[dict[str, Any]]:
    return conveyor_of(request).crm.pipelines(workspace)


@router.post("/pipelines", response_model=AppliedPipeline)
def apply_pipeline(body: PipelineIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """Create the pipeline, or change its name and stages (as `conveyor pipeline apply`)."""
    pipeline, result = conveyor_of(request).crm.apply_pipeline(workspace, _raw(body.key, body))
    return {"result": result, "pipeline": pipeline}


@router.get("/pipelines/{key}", response_model=PipelineOut)
def get_pipeline(key: KeyPath, workspace: Admin, request: Request) -> dict[str, Any]:
    return conveyor_of(request).crm.pipeline(workspace, key)


@router.put("/pipelines/{key}", response_model=AppliedPipeline)
def put_pipeline(
    key: KeyPath, body: PipelineBody, workspace: Admin, request: Request
) -> dict[str, Any]:
    """A stage that deals are in cannot be removed (409)."""
    pipeline, result = conveyor_of(request).crm.apply_pipeline(workspace, _raw(key, body))
    return {"result": result, "pipeline": pipeline}


@router.delete("/pipelines/{key}", status_code=204)
def delete_pipeline(key: KeyPath, workspace: Admin, request: Request) -> Response:
    """Refused (409) while it has deals."""
    conveyor_of(request).crm.remove_pipeline(workspace, key)
    return Response(status_code=204)


@router.get("/pipelines/{key}/board")
def board(key: KeyPath, workspace: Admin, request: Request) -> dict[str, Any]:
    """Open deals by stage, in the pipeline's order, with each stage's count and value."""
    return conveyor_of(request).crm.board(workspace, key)


@router.get("/forecast")
def deal_forecast(
    workspace: Admin,
    request: Request,
    pipeline: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Open and probability-weighted value of open deals by pipeline, stage, owner and month
    of expected close, per currency."""
    return conveyor_of(request).crm.forecast(workspace, pipeline)


@router.get("/deal-fields")
def list_deal_fields(workspace: Admin, request: Request) -> list[dict[str, Any]]:
    return conveyor_of(request).crm.deal_fields(workspace)


@router.post("/deal-fields", status_code=201)
def declare_deal_field(body: DealFieldIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """A custom deal field, typed like contact fields (text, number, date, choice, …)."""
    return conveyor_of(request).crm.declare_deal_field(
        workspace, body.key, body.type, body.label, body.choices
    )
