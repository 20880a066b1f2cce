"""Admin endpoints for send policies: the workspace's (caps, send windows, repeats), a contact's
own on top of it, and the effective policy for a contact with when each channel next allows a
marketing message."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import ContactPath
from conveyor.domain.policies import parse_policy
from conveyor.domain.workspaces import Workspace
from conveyor.services.policies import workspace_policy

router = APIRouter(tags=["send policies"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
EXAMPLE = {
    "caps": {
        "email": [{"max": 1, "per": "16 hours"}, {"max": 3, "per": "7 days"}],
        "sms": [{"max": 1, "per": "24 hours"}],
    },
    "windows": {"sms": {"from": "08:00", "to": "21:00"}},
    "repeat_within": "30 days",
}
PolicyBody = Annotated[dict[str, Any], Body(examples=[EXAMPLE])]


@router.get("/send-policy")
def get_send_policy(workspace: Admin) -> dict[str, Any]:
    """The workspace's policy, as stored and as understood."""
    raw = workspace_policy(workspace)
    return {"policy": raw, "effective": parse_policy(raw).as_dict()}


@router.put("/send-policy")
def put_send_policy(body: PolicyBody, workspace: Admin, request: Request) -> dict[str, Any]:
    """Replace the workspace's policy: `caps` per channel (several rules over rolling windows),
    `windows` per channel (allowed hours and weekdays in the contact's timezone; the rest are
    quiet hours) and `repeat_within` (a marketing template is not sent twice within it)."""
    updated = conveyor_of(request).policies.set_workspace_policy(workspace, body)
    raw = workspace_policy(updated)
    return {"policy": raw, "effective": parse_policy(raw).as_dict()}


@router.get("/contacts/{contact_id}/send-policy")
def get_contact_policy(
    contact_id: ContactPath, workspace: Admin, request: Request
) -> dict[str, Any]:
    """The policy that applies to this contact now, and when each channel next allows one."""
    return conveyor_of(request).policies.effective(workspace, contact_id)


@router.put("/contacts/{contact_id}/send-policy")
def put_contact_policy(
    contact_id: ContactPath, body: PolicyBody, workspace: Admin, request: Request
) -> dict[str, Any]:
    """The contact's own rules, merged over the workspace's channel by channel ({} clears)."""
    conveyor = conveyor_of(request)
    conveyor.policies.set_contact_policy(workspace, contact_id, body)
    return conveyor.policies.effective(workspace, contact_id)
