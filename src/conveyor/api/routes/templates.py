"""Admin endpoints for message templates: save (a new version when changed), read, versions,
delete (refused while an automation uses it) and preview for a contact."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.templates import TemplateInfo

router = APIRouter(prefix="/templates", tags=["templates"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class TemplateIn(Strict):
    channel: str = Field(description="email, sms, site_message, team or webhook")
    name: str | None = None
    content: dict[str, Any] = Field(
        description="email: subject, preheader, html or mjml, text, from_name, reply_to; "
        "sms: body; site_message: title, body, button, url; webhook: body, headers, method"
    )


class NewTemplateIn(TemplateIn):
    key: str


class TemplateOut(BaseModel):
    key: str
    channel: str
    name: str
    version: int
    content: dict[str, Any]

    @classmethod
    def of(cls, info: TemplateInfo) -> TemplateOut:
        return cls(
            key=info.key,
            channel=info.channel,
            name=info.name,
            version=info.version,
            content=info.content,
        )


class SavedOut(TemplateOut):
    result: str = Field(description="created, new version, renamed or unchanged")


class VersionOut(BaseModel):
    version: int
    created_at: datetime
    content: dict[str, Any]


class PreviewIn(Strict):
    contact_id: int = Field(ge=1, le=MAX_ID)
    event: dict[str, Any] = Field(
        default_factory=dict, description="trigger event properties to render with"
    )


@router.get("", response_model=list[TemplateOut])
def list_templates(workspace: Admin, request: Request) -> list[TemplateOut]:
    return [TemplateOut.of(t) for t in conveyor_of(request).templates.all(workspace)]


@router.post("", response_model=SavedOut)
def create_template(body: NewTemplateIn, workspace: Admin, request: Request) -> SavedOut:
    """Create a template, or add a version to it when the content changed. Liquid that does not
    parse, or uses an unknown filter, is refused naming the part, line and column."""
    info, result = conveyor_of(request).templates.save(
        workspace, body.key, body.channel, body.content, body.name
    )
    return SavedOut(**TemplateOut.of(info).model_dump(), result=result)


@router.put("/{key}", response_model=SavedOut)
def save_template(key: str, body: TemplateIn, workspace: Admin, request: Request) -> SavedOut:
    info, result = conveyor_of(request).templates.save(
        workspace, key, body.channel, body.content, body.name
    )
    return SavedOut(**TemplateOut.of(info).model_dump(), result=result)


@router.get("/{key}", response_model=TemplateOut)
def get_template(
    key: str,
    workspace: Admin,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> TemplateOut:
    return TemplateOut.of(conveyor_of(request).templates.get(workspace, key, version))


@router.get("/{key}/versions", response_model=list[VersionOut])
def template_versions(key: str, workspace: Admin, request: Request) -> list[VersionOut]:
    return [VersionOut(**v) for v in conveyor_of(request).templates.versions(workspace, key)]


@router.delete("/{key}", status_code=204)
def delete_template(key: str, workspace: Admin, request: Request) -> Response:
    """Refused (409, naming them) while an automation that is not archived uses it."""
    conveyor_of(request).templates.delete(workspace, key)
    return Response(status_code=204)


@router.post("/{key}/preview")
def preview_template(
    key: str, body: PreviewIn, workspace: Admin, request: Request
) -> dict[str, Any]:
    """The template rendered for a contact (and optional trigger event), as it would be sent,
    without tracking links. Records nothing."""
    return conveyor_of(request).delivery.preview(workspace, key, body.contact_id, body.event)
