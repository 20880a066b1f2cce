"""Admin endpoints for campaigns (newsletters): definitions, audience counts, previews, the
lifecycle (schedule, send now, pause, resume, cancel) and each campaign's report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, Strict
from conveyor.domain.workspaces import Workspace
from conveyor.services.campaigns import CampaignInfo

router = APIRouter(prefix="/campaigns", tags=["campaigns"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class CampaignIn(Strict):
    key: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=255)
    channel: Literal["email", "sms"] = "email"
    template: str | None = Field(
        default=None, max_length=64, description="required unless ab_test names the variants"
    )
    audience: dict[str, Any] = Field(
        description="{lists, segments, tags, exclude: {lists, segments, tags}}"
    )
    schedule: dict[str, Any] | None = Field(
        default=None, description="{at} or {date, local_time, late: next_day|now}"
    )
    throttle: dict[str, Any] | None = Field(default=None, description="{per_hour}")
    on_cap: Literal["skip", "defer"] | None = None
    ab_test: dict[str, Any] | None = Field(
        default=None,
        description="{variants: [template keys], sample: percent, wait, metric: clicked|converted}",
    )


class CampaignOut(BaseModel):
    key: str
    name: str
    channel: str
    template: str
    status: str = Field(description="draft, scheduled, sending, paused, sent, cancelled")
    audience: dict[str, Any]
    schedule: dict[str, Any] | None
    throttle_per_hour: int | None
    on_cap: str
    starts_at: datetime | None = Field(description="when the audience is frozen and queued")
    audience_count: int | None = Field(description="the frozen audience, once started")
    notes: list[str]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    ab_test: dict[str, Any] | None = Field(
        default=None, description="the A/B test, with its winner and decision once decided"
    )

    @classmethod
    def of(cls, info: CampaignInfo) -> CampaignOut:
        return cls(**info.__dict__)


class AppliedOut(BaseModel):
    campaign: CampaignOut
    outcome: str = Field(description="created, updated or unchanged")


class AudienceIn(Strict):
    audience: dict[str, Any]


class CountOut(BaseModel):
    count: int


class ScheduleIn(Strict):
    schedule: dict[str, Any] | None = Field(
        default=None, description="{at} or {date, local_time, late}; none: the definition's"
    )


class PreviewIn(Strict):
    contact_id: int = Field(ge=1, le=MAX_ID)


@router.get("", response_model=list[CampaignOut])
def list_campaigns(workspace: Admin, request: Request) -> list[CampaignOut]:
    return [CampaignOut.of(c) for c in conveyor_of(request).campaigns.all(workspace)]


@router.post("", response_model=AppliedOut)
def apply_campaign(body: CampaignIn, workspace: Admin, request: Request) -> AppliedOut:
    """Create a campaign (a draft), or change a draft: the same as `conveyor campaign create`."""
    raw = body.model_dump(exclude_none=True)
    info, outcome = conveyor_of(request).campaigns.apply(workspace, raw)
    return AppliedOut(campaign=CampaignOut.of(info), outcome=outcome)


@router.post("/count", response_model=CountOut)
def count_audience(body: AudienceIn, workspace: Admin, request: Request) -> CountOut:
    """How many contacts an audience holds now, before saving anything."""
    return CountOut(count=conveyor_of(request).campaigns.count(workspace, audience=body.audience))


@router.get("/{key}", response_model=CampaignOut)
def get_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    return CampaignOut.of(conveyor_of(request).campaigns.get(workspace, key))


@router.get("/{key}/count", response_model=CountOut)
def count_campaign(key: str, workspace: Admin, request: Request) -> CountOut:
    """The audience now (with an address for the channel); once started, the frozen count."""
    return CountOut(count=conveyor_of(request).campaigns.count(workspace, key=key))


@router.post("/{key}/preview")
def preview_campaign(
    key: str, body: PreviewIn, workspace: Admin, request: Request
) -> dict[str, Any]:
    """The campaign's template rendered for a contact, as it would be sent. Records nothing."""
    conveyor = conveyor_of(request)
    campaign = conveyor.campaigns.get(workspace, key)
    return conveyor.delivery.preview(workspace, campaign.template, body.contact_id, {})


@router.post("/{key}/schedule", response_model=CampaignOut)
def schedule_campaign(
    key: str, body: ScheduleIn, workspace: Admin, request: Request
) -> CampaignOut:
    """draft → scheduled: at a moment, or at a local time in each contact's timezone."""
    campaigns = conveyor_of(request).campaigns
    return CampaignOut.of(campaigns.schedule(workspace, key, body.schedule))


@router.post("/{key}/send", response_model=CampaignOut)
def send_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    """draft → scheduled for now: the worker freezes the audience and queues at once."""
    campaigns = conveyor_of(request).campaigns
    now = conveyor_of(request).clock.now()
    return CampaignOut.of(campaigns.schedule(workspace, key, {"at": now.isoformat()}))


@router.post("/{key}/unschedule", response_model=CampaignOut)
def unschedule_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    return CampaignOut.of(conveyor_of(request).campaigns.unschedule(workspace, key))


@router.post("/{key}/pause", response_model=CampaignOut)
def pause_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    """Hold the messages not yet handed to delivery; `resume` releases them."""
    return CampaignOut.of(conveyor_of(request).campaigns.pause(workspace, key))


@router.post("/{key}/resume", response_model=CampaignOut)
def resume_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    return CampaignOut.of(conveyor_of(request).campaigns.resume(workspace, key))


@router.post("/{key}/cancel", response_model=CampaignOut)
def cancel_campaign(key: str, workspace: Admin, request: Request) -> CampaignOut:
    """Withdraw every message not yet handed to delivery, at once; those being sent finish."""
    return CampaignOut.of(conveyor_of(request).campaigns.cancel(workspace, key))


@router.get("/{key}/report")
def campaign_report(key: str, workspace: Admin, request: Request) -> dict[str, Any]:
    """Audience, queued, sent, delivered, skipped (with reasons), failed, opened, clicked,
    bounced, complained, unsubscribed, and notes (late timezones, cancellation)."""
    return conveyor_of(request).campaigns.report(workspace, key)
