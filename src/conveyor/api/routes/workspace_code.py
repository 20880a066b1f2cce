"""A workspace as code over HTTP: the plan and the apply of a folder's resources, which
`conveyor plan|apply DIR --url URL --key KEY` reads locally and sends here."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.problems import problem
from conveyor.domain.errors import InvalidInput
from conveyor.domain.workspace_code import KINDS, Resource, resources_of
from conveyor.domain.workspaces import Workspace

router = APIRouter(prefix="/workspace", tags=["workspace"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class ResourceIn(BaseModel):
    kind: str = Field(description=f"one of {', '.join(KINDS)}")
    key: str = Field(min_length=1, max_length=255)
    source: str = Field(default="", max_length=1024, description="the file it came from")
    definition: Any = Field(description="the file's content for this resource")


class FolderIn(BaseModel):
    resources: list[ResourceIn] = Field(max_length=5000)
    prune: bool = False


def _resources(body: FolderIn) -> list[Resource]:
    found: list[Resource] = []
    for n, item in enumerate(body.resources):
        source = item.source or f"resources.{n}"
        parsed = resources_of(item.kind, item.definition, source)  # errors name `source`
        if [r.key for r in parsed] != [item.key]:
            raise InvalidInput(f"resources.{n}.key", "must be the key its definition names")
        found.extend(parsed)
    return found


@router.post("/plan")
async def plan_workspace(body: FolderIn, workspace: Admin, request: Request) -> dict[str, Any]:
    """What applying these resources would change (creates, updates with diffs, deletes with
    `prune`, drift since the last apply, every error); changes nothing."""
    code = conveyor_of(request).code
    plan = await run_in_threadpool(code.plan, workspace, _resources(body), prune=body.prune)
    return plan.as_dict()


@router.post("/apply", response_model=None)
async def apply_workspace(
    body: FolderIn, workspace: Admin, request: Request
) -> dict[str, Any] | JSONResponse:
    """Apply these resources: all of them, or — on any error — none (a 422 with the plan)."""
    code = conveyor_of(request).code
    plan = await run_in_threadpool(code.apply, workspace, _resources(body), prune=body.prune)
    if plan.errors:
        first = plan.errors[0]
        return problem(
            422,
            f"{len(plan.errors)} resource(s) refused, nothing applied: "
            f"{first.kind}/{first.key}: {first.error}",
            slug="invalid-input",
            title="Invalid input",
            field=first.field,
            errors=[
                {
                    "field": f"{c.source or c.kind + '/' + c.key}: {c.field or ''}".rstrip(": "),
                    "detail": c.error,
                }
                for c in plan.errors
            ],
            plan=plan.as_dict(),
        )
    return plan.as_dict()
