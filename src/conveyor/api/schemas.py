"""Request and response bodies of the admin API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from conveyor.domain.contacts import Contact, SubscriptionStatus
from conveyor.domain.fields import STANDARD_FIELDS, FieldDefinition, FieldType

MAX_ID = 2**63 - 1  # BIGINT
ContactPath = Annotated[int, Path(ge=1, le=MAX_ID, description="contact id")]
Score = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]

Status = Literal["subscribed", "unconfirmed", "unsubscribed", "bounced", "complained"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContactIn(Strict):
    external_id: str | None = Field(default=None, description="Your app's id for this person")
    email: str | None = None
    phone: str | None = Field(
        default=None, description="E.164, or national with the workspace's default_country"
    )
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = Field(default=None, description="IANA name, e.g. Europe/Warsaw")
    locale: str | None = Field(default=None, description="e.g. en-US")
    fields: dict[str, Any] = Field(default_factory=dict, description="Custom field values by key")
    tags: list[str] = Field(default_factory=list)
    lists: dict[str, Status] = Field(default_factory=dict, description="List key → status")
    score: Score | None = None

    def values(self) -> dict[str, Any]:
        """Standard attributes that were given (null clears) plus custom fields."""
        given = {k: getattr(self, k) for k in STANDARD_FIELDS if k in self.model_fields_set}
        return {**given, **self.fields}


class ContactPatch(ContactIn):
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    score_delta: Score | None = Field(default=None, description="Add this to the lead score")


class ContactOut(BaseModel):
    id: int
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    score: int
    fields: dict[str, Any]
    tags: list[str]
    lists: dict[str, str]
    anonymous_ids: list[str]
    created_at: datetime
    updated_at: datetime
    scores: dict[str, float] = Field(
        default_factory=dict,
        description="Named scores of the scoring model, now (decayed); see /contacts/{id}/scores",
    )

    @classmethod
    def of(cls, contact: Contact) -> ContactOut:
        return cls(**contact.__dict__)


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null at the end"
    )


class TagsIn(Strict):
    tags: list[str] = Field(min_length=1)


class SubscriptionIn(Strict):
    status: Status


class ScoreIn(Strict):
    delta: Score | None = None
    score: Score | None = None


class EventOut(BaseModel):
    id: int
    contact_id: int | None
    kind: str
    name: str
    properties: dict[str, Any]
    context: dict[str, Any] | None
    message_id: str | None
    timestamp: datetime
    received_at: datetime

    @classmethod
    def of(cls, row: Any) -> EventOut:
        return cls(
            id=row.id,
            contact_id=row.contact_id,
            kind=row.kind,
            name=row.name,
            properties=row.properties,
            context=row.context,
            message_id=row.message_id,
            timestamp=row.timestamp,
            received_at=row.received_at,
        )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class FieldIn(Strict):
    key: str = Field(max_length=64)
    type: FieldType
    label: str | None = Field(default=None, max_length=255)
    choices: list[str] | None = None


class FieldPatch(Strict):
    label: str | None = Field(default=None, max_length=255)
    choices: list[str] | None = None


class FieldOut(BaseModel):
    key: str
    type: FieldType
    label: str
    choices: list[str] | None

    @classmethod
    def of(cls, definition: FieldDefinition) -> FieldOut:
        return cls(**definition.as_dict())


class ListIn(Strict):
    key: str = Field(max_length=64)
    name: str | None = Field(default=None, max_length=255)
    double_opt_in: bool = False


class ListPatch(Strict):
    name: str | None = Field(default=None, max_length=255)
    double_opt_in: bool | None = None


class ListOut(BaseModel):
    key: str
    name: str
    double_opt_in: bool
    counts: dict[str, int] = Field(description="Contacts per subscription status")


class KeyIn(Strict):
    kind: Literal["admin", "write"]
    name: str | None = Field(default=None, max_length=100)


class KeyOut(BaseModel):
    id: int
    kind: str
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it")
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(BaseModel):
    id: int
    kind: str
    name: str
    key: str = Field(description="The key itself. Shown once: store it now.")


class WorkspaceOut(BaseModel):
    name: str
    settings: dict[str, Any]


class SettingsPatch(Strict):
    default_country: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        description="ISO 3166 code for national phone numbers",
    )
    auto_declare_fields: bool | None = None
    timezone: str | None = Field(
        default=None, description="IANA zone for contacts without one (dates, send windows)"
    )
    display_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the brand contacts know you by: `{{ workspace.display_name }}` in templates",
    )
    template_vars: dict[str, str] | None = Field(
        default=None, description="`workspace.*` values templates can use (company, address…)"
    )
    site_messages_verify: bool | None = Field(
        default=None, description="require userHash when the snippet asks by userId"
    )
    attribution: dict[str, Any] | None = Field(
        default=None,
        description="reports' attribution model: {event, revenue_properties, click_days, "
        "open_days} (defaults: order_completed, [revenue, total], 5, 1)",
    )


class ImportOut(BaseModel):
    rows: int
    created: int
    updated: int
    unchanged: int
    failed: int
    errors: list[dict[str, Any]]
    ignored_columns: list[str]
    list_created: bool


class TrackingOut(BaseModel):
    success: bool = True
    accepted: int
    duplicates: int
    errors: list[dict[str, Any]] = Field(default_factory=list, description="Bad items, by index")


__all__ = ["SubscriptionStatus"]
