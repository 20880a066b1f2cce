"""Request and response bodies of the CRM endpoints: members, pipelines, deals, tasks."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, Field

from conveyor.api.schemas import MAX_ID, Strict

MAX_SMALL = 2**31 - 1  # INTEGER ids (members)
Role = Literal["owner", "admin", "marketer", "sales", "viewer"]
DealStatus = Literal["open", "won", "lost"]
TaskType = Literal["call", "email", "meeting", "todo"]
MemberId = Annotated[int, Field(ge=1, le=MAX_SMALL)]
ContactId = Annotated[int, Field(ge=1, le=MAX_ID)]
MemberPath = Annotated[int, Path(ge=1, le=MAX_SMALL, description="member id")]
DealPath = Annotated[int, Path(ge=1, le=MAX_ID, description="deal id")]
TaskPath = Annotated[int, Path(ge=1, le=MAX_ID, description="task id")]
Money = Annotated[float, Field(ge=0, le=10**13, description="in the currency's major unit")]


class MemberIn(Strict):
    name: str = Field(min_length=1, max_length=255)
    email: str = Field(max_length=320)
    role: Role = "sales"


class MemberPatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    role: Role | None = None


class MemberOut(BaseModel):
    id: int
    name: str
    email: str
    role: str
    created_at: datetime


class OwnerIn(Strict):
    member: MemberId | Annotated[str, Field(max_length=320)] | None = Field(
        description="A member's id or email; null removes the owner"
    )


class StageIn(Strict):
    name: str = Field(min_length=1, max_length=64)
    probability: int = Field(default=0, ge=0, le=100, description="% chance of winning")


class PipelineBody(Strict):
    name: str | None = Field(default=None, max_length=255)
    stages: list[StageIn] = Field(min_length=1, max_length=50, description="In order")


class PipelineIn(PipelineBody):
    key: str = Field(max_length=64)


class PipelineOut(BaseModel):
    key: str
    name: str
    stages: list[dict[str, Any]]


class AppliedPipeline(BaseModel):
    result: str = Field(description="created, changed or unchanged")
    pipeline: PipelineOut


class DealFieldIn(Strict):
    key: str = Field(max_length=64)
    type: str = Field(max_length=16)
    label: str | None = Field(default=None, max_length=255)
    choices: list[Annotated[str, Field(max_length=255)]] | None = Field(
        default=None, max_length=500
    )


class DealIn(Strict):
    title: str = Field(min_length=1, max_length=255)
    pipeline: str = Field(max_length=64)
    stage: str | None = Field(default=None, max_length=64, description="The first by default")
    value: Money = 0
    currency: str = Field(default="EUR", max_length=3)
    contact_id: ContactId
    contacts: list[ContactId] = Field(default_factory=list, max_length=100)
    owner_id: MemberId | None = None
    status: DealStatus = "open"
    lost_reason: str | None = Field(default=None, max_length=500)
    expected_close: date | None = None
    fields: dict[str, Any] = Field(default_factory=dict)


class DealPatch(Strict):
    title: str | None = Field(default=None, min_length=1, max_length=255)
    stage: str | None = Field(default=None, max_length=64)
    value: Money | None = None
    currency: str | None = Field(default=None, max_length=3)
    contacts: list[ContactId] | None = Field(default=None, max_length=100)
    owner_id: MemberId | None = None
    status: DealStatus | None = None
    lost_reason: str | None = Field(default=None, max_length=500)
    expected_close: date | None = None
    fields: dict[str, Any] | None = None


class DealOut(BaseModel):
    id: int
    title: str
    value: int | float
    currency: str
    contact_id: int
    contacts: list[int]
    owner_id: int | None
    pipeline: str
    stage: str
    status: str
    lost_reason: str | None
    expected_close: str | None
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    notes: list[dict[str, Any]] | None = None


class NoteIn(Strict):
    body: str = Field(min_length=1, max_length=10000)
    author_id: MemberId | None = None


class TaskIn(Strict):
    type: TaskType = "todo"
    title: str = Field(min_length=1, max_length=255)
    due_at: AwareDatetime | None = None
    assignee_id: MemberId | None = None
    contact_id: ContactId | None = None
    deal_id: ContactId | None = None


class TaskPatch(Strict):
    type: TaskType | None = None
    title: str | None = Field(default=None, min_length=1, max_length=255)
    due_at: AwareDatetime | None = None
    assignee_id: MemberId | None = None
    done: bool | None = None


class TaskOut(BaseModel):
    id: int
    type: str
    title: str
    due_at: datetime | None
    assignee_id: int | None
    contact_id: int | None
    deal_id: int | None
    done: bool
    done_at: datetime | None
    overdue: bool
