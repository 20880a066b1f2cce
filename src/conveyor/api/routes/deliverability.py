"""Admin endpoints for the deliverability guard: each mailbox provider's status and why, the
guard's rules, a check on demand, and resuming a paused provider."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import Strict
from conveyor.domain.deliverability import parse_rules
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["deliverability"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
Provider = Annotated[str, Path(description="gmail, yahoo, outlook, icloud or other")]


class ProviderOut(BaseModel):
    provider: str
    status: str = Field(description="ok, throttled or paused (marketing email only)")
    reason: str | None = None
    stats: dict[str, Any] = Field(
        description="sent, hard_bounces, complaints and their rates in the window, since when"
    )
    changed_at: str | None = None
    checked_at: str | None = None


class StatusOut(BaseModel):
    rules: dict[str, Any]
    providers: list[ProviderOut]


class CheckedOut(StatusOut):
    changed: int = Field(description="Providers whose status changed in this check")


class ResumedOut(ProviderOut):
    released: int = Field(description="Held marketing emails now due")


class RulesIn(Strict):
    enabled: bool | None = None
    complaint_rate: float | None = Field(None, description="pause at this rate (0.002 = 0.2 %)")
    bounce_rate: float | None = Field(None, description="pause at this hard-bounce rate")
    min_volume: int | None = Field(None, description="emails in the window before judging")
    window: str | None = Field(None, description="rates roll over this long, e.g. '7 days'")
    throttle_at: float | None = Field(None, description="throttle at this fraction of a threshold")
    throttle_per_hour: int | None = None
    domains: dict[str, str] | None = Field(None, description="your own domain → provider map")


@router.get("/deliverability", response_model=StatusOut)
def deliverability_status(workspace: Admin, request: Request) -> StatusOut:
    """Each mailbox provider's status, the reason, and the rates it was last judged on."""
    return StatusOut(**conveyor_of(request).deliverability.status(workspace))


@router.put("/deliverability/rules", response_model=StatusOut)
def set_deliverability_rules(body: RulesIn, workspace: Admin, request: Request) -> StatusOut:
    """Replace the guard's thresholds (unset fields take their defaults)."""
    conveyor = conveyor_of(request)
    raw = body.model_dump(exclude_none=True)
    parse_rules(raw)
    updated = conveyor.workspaces.update_settings(workspace, {"deliverability": raw or None})
    return StatusOut(**conveyor.deliverability.status(updated))


@router.post("/deliverability/check", response_model=CheckedOut)
def check_deliverability(workspace: Admin, request: Request) -> CheckedOut:
    """Judge every provider now, rather than at the worker's next check."""
    conveyor = conveyor_of(request)
    changed = conveyor.deliverability.check(workspace)
    return CheckedOut(**conveyor.deliverability.status(workspace), changed=changed)


@router.post("/deliverability/{provider}/resume", response_model=ResumedOut)
def resume_provider(provider: Provider, workspace: Admin, request: Request) -> ResumedOut:
    """Lift a pause or throttle: the held marketing email goes out, rates count from now."""
    return ResumedOut(**conveyor_of(request).deliverability.resume(workspace, provider))
