"""Admin endpoints for lead scoring: the workspace's scoring model, and a contact's scores
explained rule by rule."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from conveyor.api.auth import admin_workspace, conveyor_of
from conveyor.api.schemas import MAX_ID, Strict
from conveyor.domain.workspaces import Workspace

router = APIRouter(tags=["scoring"])
Admin = Annotated[Workspace, Depends(admin_workspace)]


class ScoringModelIn(Strict):
    scores: dict[str, Any] = Field(
        description="Named scores: {NAME: {decay?: {half_life} | {percent, per}, rules: [...]}}"
    )


class ScoringModelOut(BaseModel):
    version: int
    updated_at: datetime
    definition: dict[str, Any]
    contacts_scored: int


class AppliedOut(BaseModel):
    version: int
    contacts: int = Field(description="Contacts with a score after the recompute")


class RuleOut(BaseModel):
    rule: str
    kind: str = Field(description="event (points earned by events) or field (holds now)")
    points: float = Field(description="Points earned (event rules: their sum, before decay)")
    now: float = Field(description="What those points are worth now, decayed")
    awards: int | None = None
    last_at: datetime | None = None
    why: str | None = None


class ScoreOut(BaseModel):
    score: str
    value: float
    half_life_days: float | None
    rules: list[RuleOut]


class ScoresOut(BaseModel):
    contact_id: int
    at: datetime
    default_score: int = Field(description="The contact's own `score` (manual, no decay)")
    scores: list[ScoreOut]


@router.get("/scoring-model", response_model=ScoringModelOut)
def get_model(workspace: Admin, request: Request) -> ScoringModelOut:
    return ScoringModelOut(**conveyor_of(request).scoring.model(workspace))


@router.put("/scoring-model", response_model=AppliedOut)
def put_model(body: ScoringModelIn, workspace: Admin, request: Request) -> AppliedOut:
    """Replace the scoring model and recompute every contact's scores from the event log."""
    return AppliedOut(**conveyor_of(request).scoring.apply(workspace, body.model_dump()))


@router.post("/scoring-model/validate", response_model=dict[str, list[str]])
def validate_model(
    body: ScoringModelIn, workspace: Admin, request: Request
) -> dict[str, list[str]]:
    """Check a scoring model without applying it; the score names it defines."""
    model = conveyor_of(request).scoring.validate(workspace, body.model_dump())
    return {"scores": sorted(model.scores)}


@router.get("/contacts/{contact_id}/scores", response_model=ScoresOut)
def contact_scores(
    contact_id: Annotated[int, Path(ge=1, le=MAX_ID)], workspace: Admin, request: Request
) -> ScoresOut:
    """The contact's named scores now, each rule's points and what they are worth now."""
    return ScoresOut(**conveyor_of(request).scoring.explain(workspace, contact_id))
