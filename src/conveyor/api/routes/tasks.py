"""Admin endpoints for the team's tasks: `done: true` records `task.completed`; an open task
past due gets `task.overdue` once, from the worker's sweep."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.crm_schemas import MAX_SMALL, TaskIn, TaskOut, TaskPatch, TaskPath
from conveyor.api.schemas import MAX_ID
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["tasks"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
Id = Annotated[int | None, Query(ge=1, le=MAX_ID)]
Member = Annotated[int | None, Query(ge=1, le=MAX_SMALL)]


@router.get("/tasks", response_model=list[TaskOut])
def list_tasks(
    workspace: Admin,
    request: Request,
    assignee: Member = None,
    deal: Id = None,
    contact: Id = None,
    done: bool | None = None,
) -> list[dict[str, Any]]:
    return conveyor_of(request).tasks.all(
        workspace, assignee_id=assignee, deal_id=deal, contact_id=contact, done=done
    )


@router.post("/tasks", status_code=201, response_model=TaskOut)
def create_task(body: TaskIn, workspace: Admin, request: Request) -> dict[str, Any]:
    return conveyor_of(request).tasks.create(workspace, body.model_dump())


@router.get("/tasks/{task_id}", response_model=TaskOut)
def get_task(task_id: TaskPath, workspace: Admin, request: Request) -> dict[str, Any]:
    return conveyor_of(request).tasks.get(workspace, task_id)


@router.patch("/tasks/{task_id}", response_model=TaskOut)
def update_task(
    task_id: TaskPath, body: TaskPatch, workspace: Admin, request: Request
) -> dict[str, Any]:
    """`done: true` completes it (`task.completed`)."""
    changes = body.model_dump(exclude_unset=True)
    return conveyor_of(request).tasks.update(workspace, task_id, changes)


@router.delete("/tasks/{task_id}", status_code=204)
def delete_task(task_id: TaskPath, workspace: Admin, request: Request) -> Response:
    conveyor_of(request).tasks.remove(workspace, task_id)
    return Response(status_code=204)
