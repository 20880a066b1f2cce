"""Admin endpoints for automations: apply a definition, lifecycle, versions, stats, enrollment,
plus contact timelines (every step with its reason) and the outbox."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, ContactPath, Strict
from conveyor.domain.errors import FieldError, InvalidInput, NotFound
from conveyor.domain.signatures import same_secret
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import AutomationInfo, hook_token

router = APIRouter(tags=["automations"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class AutomationOut(BaseModel):
    key: str
    name: str
    status: str
    version: int
    definition: dict[str, Any]

    @classmethod
    def of(cls, info: AutomationInfo) -> AutomationOut:
        return cls(
            key=info.key,
            name=info.name,
            status=info.status,
            version=info.version,
            definition=info.definition,
        )


class AppliedOut(AutomationOut):
    result: str = Field(description="created, new version, or unchanged")


class StatusIn(Strict):
    status: str = Field(description="active, paused or archived")


class EnrollIn(Strict):
    contact_id: int = Field(ge=1, le=MAX_ID)


def _refuse_missing(request: Request, workspace: Workspace, body: dict[str, Any]) -> None:
    problems = conveyor_of(request).automation_drafts.check(workspace, body)
    if problems:
        first = problems[0]
        raise InvalidInput(
            first.path, first.message, [FieldError(p.path, p.message) for p in problems]
        )


@router.get("/automations", response_model=list[AutomationOut])
def list_automations(workspace: Admin, request: Request) -> list[AutomationOut]:
    return [AutomationOut.of(a) for a in conveyor_of(request).automations.all(workspace)]


@router.post("/automations", response_model=AppliedOut)
def apply_automation(body: dict[str, Any], workspace: Admin, request: Request) -> AppliedOut:
    """Create an automation (as a draft) or, when it changed, add a new version. Contacts
    inside keep their version; new entries take the new one. Every template, list, segment and
    automation it names must exist (422 naming each field), as `conveyor automation apply`
    checks: a send naming a missing template would otherwise fail message by message."""
    _refuse_missing(request, workspace, body)
    info, result = conveyor_of(request).automations.apply(workspace, body)
    return AppliedOut(**AutomationOut.of(info).model_dump(), result=result)


@router.post("/automations/validate")
def validate_automation(body: dict[str, Any], workspace: Admin, request: Request) -> dict[str, Any]:
    automation = conveyor_of(request).automations.validate(workspace, body)
    _refuse_missing(request, workspace, body)
    return {"valid": True, "key": automation.key, "nodes": list(automation.nodes)}


@router.get("/automations/{key}", response_model=AutomationOut)
def get_automation(key: str, workspace: Admin, request: Request) -> AutomationOut:
    return AutomationOut.of(conveyor_of(request).automations.get(workspace, key))


@router.patch("/automations/{key}", response_model=AutomationOut)
def set_status(key: str, body: StatusIn, workspace: Admin, request: Request) -> AutomationOut:
    """draft → active → paused → active … → archived. Paused automations enroll no one and
    their runs wait where they are."""
    return AutomationOut.of(
        conveyor_of(request).automations.set_status(workspace, key, body.status)
    )


@router.get("/automations/{key}/diff", response_class=PlainTextResponse)
def diff_versions(
    key: str,
    workspace: Admin,
    request: Request,
    version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> str:
    return conveyor_of(request).automations.diff(workspace, key, version)


@router.get("/automations/{key}/webhook")
def automation_webhook(key: str, workspace: Admin, request: Request) -> dict[str, str]:
    """The inbound webhook URL for apps that can only send webhooks (keep it secret); its JSON
    body, naming the contact by `email` or `userId`, becomes the trigger event."""
    conveyor = conveyor_of(request)
    token = conveyor.automations.webhook_token(workspace, key)
    base = conveyor.settings.public_url or str(request.base_url).rstrip("/")
    return {"url": f"{base}/hooks/{workspace.name}/{key}/{token}"}


@router.post("/hooks/{workspace_name}/{key}/{token}", status_code=202)
def inbound_webhook(
    workspace_name: str, key: str, token: str, body: dict[str, Any], request: Request
) -> dict[str, Any]:
    """Called by other apps, without an API key: the secret token in the URL authenticates."""
    conveyor = conveyor_of(request)
    try:
        workspace = conveyor.workspaces.get(workspace_name)
        expected = hook_token(workspace, key)
    except NotFound:
        raise NotFound("no such webhook") from None
    if not same_secret(token, expected):
        raise NotFound("no such webhook")
    contact = conveyor.ingest.hook(workspace, key, body, request.headers.get("idempotency-key"))
    return {"accepted": True, "contact_id": contact}


@router.get("/automations/{key}/stats")
def automation_stats(key: str, workspace: Admin, request: Request) -> dict[str, Any]:
    """Per node: contacts waiting there now, and steps by outcome; runs by outcome."""
    return conveyor_of(request).automations.stats(workspace, key)


@router.post("/automations/{key}/enroll")
def enroll_contact(key: str, body: EnrollIn, workspace: Admin, request: Request) -> dict[str, str]:
    """Add a contact by hand; entry rules still apply, and the answer says what happened."""
    return {"result": conveyor_of(request).engine.enroll(workspace, key, body.contact_id)}


@router.get("/contacts/{contact_id}/timeline")
def contact_timeline(
    contact_id: ContactPath,
    workspace: Admin,
    request: Request,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Every step this contact took in any automation, newest first, with the reason."""
    items, next_cursor = conveyor_of(request).automations.timeline(
        workspace, contact_id, cursor=cursor, limit=limit
    )
    return {"items": items, "next_cursor": next_cursor}
