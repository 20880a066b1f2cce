"""Admin endpoints for split tests: each test of an automation with its latest decision, and a
check on demand (the worker checks every minute)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["experiments"])
Admin = Annotated[Workspace, Depends(admin_workspace)]
Key = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class PathOut(BaseModel):
    name: str
    weight: float


class ExperimentOut(BaseModel):
    node: str = Field(description="The split node's id")
    current: bool = Field(description="Whether the automation's current version has this test")
    paths: list[PathOut] | None = None
    test: dict[str, Any] | None = Field(
        None, description="metric, window, min_sample, max_duration, fallback, confidence"
    )
    status: str = Field(
        description="waiting (no contact yet), collecting (below min_sample), running, "
        "decided (a winner every later contact takes) or inconclusive (the split continues)"
    )
    winner: str | None = None
    started_at: datetime | None = None
    checked_at: datetime | None = None
    decided_at: datetime | None = None
    decision: dict[str, Any] | None = Field(
        None,
        description="Per-path counts and rates, the leader's comparisons (difference, lift, "
        "always-valid intervals, likelihood ratio, p-value), the rule and the reason",
    )


class ExperimentsOut(BaseModel):
    automation: str
    items: list[ExperimentOut]


class CheckedOut(ExperimentsOut):
    decided: int = Field(description="Tests that reached a final decision in this check")


@router.get("/automations/{key}/experiments", response_model=ExperimentsOut)
def experiments(key: Key, workspace: Admin, request: Request) -> ExperimentsOut:
    """The automation's split tests: their spec, counts per path and the decision so far."""
    items = conveyor_of(request).experiments.of_automation(workspace, key)
    return ExperimentsOut(automation=key, items=[ExperimentOut(**i) for i in items])


@router.post("/automations/{key}/experiments/check", response_model=CheckedOut)
def check(key: Key, workspace: Admin, request: Request) -> CheckedOut:
    """Decide the automation's running split tests now, rather than at the worker's next check."""
    conveyor = conveyor_of(request)
    items = conveyor.experiments.of_automation(workspace, key)  # 404 for an unknown key
    decided = conveyor.experiments.check(workspace, key)
    items = conveyor.experiments.of_automation(workspace, key)
    return CheckedOut(automation=key, items=[ExperimentOut(**i) for i in items], decided=decided)
