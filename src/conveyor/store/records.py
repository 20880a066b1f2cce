"""What the store hands out: frozen records, one per kind of row, instead of driver rows.

A record's fields are its table's columns, named alike and in the same order, so `from_row`
builds it positionally (a keyword build from the row's mapping costs three times as much, which
shows on the contact reads of the engine). `tests/unit/store/test_records.py` holds each record
to its table.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self


class _FromRow:
    __slots__ = ()

    @classmethod
    def from_row(cls, row: Any) -> Self:
        """The record of a row that selects the record's columns, in its fields' order."""
        return cls(*row)


# --- workspaces ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkspaceRecord(_FromRow):
    id: int
    name: str
    secret: str
    settings: dict[str, Any]
    created_at: datetime
    catalog_version: int  # goes up when its fields, lists, automations or segments change


@dataclass(frozen=True, slots=True)
class ApiKeyRecord(_FromRow):
    id: int
    workspace_id: int
    kind: str
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class LiveKey:
    """An unrevoked API key, as presented, with the workspace it opens."""

    key_id: int
    kind: str
    workspace: WorkspaceRecord

    @classmethod
    def from_row(cls, row: Any) -> LiveKey:
        """From (key id, kind, *the workspace's columns)."""
        return cls(row[0], row[1], WorkspaceRecord.from_row(row[2:]))


# --- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    type: str
    label: str | None
    choices: list[str] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ListRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    name: str
    double_opt_in: bool
    created_at: datetime


# --- contacts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactRecord(_FromRow):
    id: int
    workspace_id: int
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    score: int
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# --- segments --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmentRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    name: str
    condition: Any  # the condition as saved (JSON), parsed by the service
    time_based: bool
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    channel: str
    name: str
    version: int  # the version new messages use
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CurrentTemplate(TemplateRecord):
    """A template with the content of its current version."""

    content: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TemplateVersionRecord(_FromRow):
    template_id: int
    version: int
    content: dict[str, Any]
    created_at: datetime


# --- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRecord(_FromRow):
    """One outbox row: a message on its way out (or gone)."""

    id: int
    workspace_id: int
    channel: str
    template: str | None
    contact_id: int
    run_id: int | None
    automation_id: int | None
    version: int | None
    node: str | None
    message_class: str
    priority: int
    payload: dict[str, Any]
    idempotency_key: str
    status: str
    created_at: datetime
    send_after: datetime | None
    lease_until: datetime | None
    attempts: int
    recipient: str | None
    content: dict[str, Any] | None
    provider_id: str | None
    error: str | None
    sent_at: datetime | None
    campaign_id: int | None = None  # the campaign that queued it
    request_id: str | None = None  # the HTTP request its run started from


@dataclass(frozen=True, slots=True)
class RecentSend(_FromRow):
    """A marketing message sent, or being sent, that counts against a contact's caps."""

    id: int
    contact_id: int
    channel: str
    template: str | None
    sent_at: datetime
    automation_id: int | None  # whose send it was (a simulation tells its own from others')


@dataclass(frozen=True, slots=True)
class EventRecord(_FromRow):
    """One event of the log, as a replay (the simulator) reads it."""

    id: int
    workspace_id: int
    contact_id: int | None
    kind: str
    name: str
    properties: dict[str, Any]
    context: dict[str, Any] | None
    message_id: str | None
    timestamp: datetime
    received_at: datetime
    request_id: str | None = None  # the HTTP request that wrote it (or whose run did)

    @property
    def source(self) -> str | None:
        """Which part of Conveyor wrote a system event (`context.source`), as the live log's
        rows carry it."""
        return (self.context or {}).get("source")


@dataclass(frozen=True, slots=True)
class SuppressionRecord(_FromRow):
    workspace_id: int
    channel: str
    address: str
    reason: str
    detail: str | None
    created_at: datetime


# --- CRM -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MemberRecord(_FromRow):
    id: int
    workspace_id: int
    name: str
    email: str
    role: str
    password_hash: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class PipelineRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    name: str
    stages: list[dict[str, Any]]  # [{name, probability}], in order
    created_at: datetime
    updated_at: datetime


# --- lead scoring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScoringModelRecord(_FromRow):
    workspace_id: int
    definition: dict[str, Any]
    version: int
    epoch: datetime
    armed: dict[str, list[float]]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class DealRecord(_FromRow):
    id: int
    workspace_id: int
    pipeline_id: int
    title: str
    value_minor: int
    currency: str
    contact_id: int
    owner_id: int | None
    stage: str
    status: str
    lost_reason: str | None
    expected_close: str | None
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None


@dataclass(frozen=True, slots=True)
class NoteRecord(_FromRow):
    id: int
    workspace_id: int
    contact_id: int | None
    deal_id: int | None
    author_id: int | None
    body: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TaskRecord(_FromRow):
    id: int
    workspace_id: int
    type: str
    title: str
    due_at: datetime | None
    assignee_id: int | None
    contact_id: int | None
    deal_id: int | None
    done_at: datetime | None
    overdue_at: datetime | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ContactScoreRecord(_FromRow):
    contact_id: int
    score: str
    workspace_id: int
    norm: float
    fixed: float
    checked_at: datetime
    cross_at: datetime | None


@dataclass(frozen=True, slots=True)
class ScoreAwardRecord(_FromRow):
    id: int
    contact_id: int
    workspace_id: int
    score: str
    rule: str
    event_id: int | None
    at: datetime
    points: float


# --- campaigns and bulk actions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CampaignRecord(_FromRow):
    id: int
    workspace_id: int
    key: str
    name: str
    channel: str
    template: str
    audience: dict[str, Any]
    schedule: dict[str, Any] | None
    throttle_per_hour: int | None
    status: str
    starts_at: datetime | None
    audience_count: int | None
    notes: list[str]
    ab_test: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class BulkJobRecord(_FromRow):
    id: int
    workspace_id: int
    action: str
    audience: dict[str, Any]
    params: dict[str, Any]
    status: str
    total: int
    done: int
    cursor: int
    outcomes: dict[str, int]
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


# --- split tests and the deliverability guard ------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExperimentRecord(_FromRow):
    """A split node's test: its latest decision, and the winner once decided."""

    id: int
    workspace_id: int
    automation_id: int
    node: str
    status: str
    winner: str | None
    started_at: datetime
    checked_at: datetime
    decided_at: datetime | None
    decision: dict[str, Any]


@dataclass(frozen=True, slots=True)
class PathStep(_FromRow):
    """A contact taking a split's path: the step that says so."""

    run_id: int | None
    contact_id: int
    path: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LoggedEvent(_FromRow):
    contact_id: int | None
    name: str
    properties: dict[str, Any]
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class ProviderHealthRecord(_FromRow):
    """Whether marketing email to one mailbox provider flows (ok), is throttled or paused."""

    workspace_id: int
    provider: str
    status: str
    reason: str | None
    stats: dict[str, Any]
    since: datetime | None
    changed_at: datetime
    checked_at: datetime
    hour_start: datetime | None
    hour_sent: int


# --- the web panel -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSessionRecord(_FromRow):
    token_hash: str
    workspace_id: int
    member_id: int
    csrf: str
    created_at: datetime
    seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class NodeStepRecord(_FromRow):
    """A step of one node, with the contact it was for (the panel's node drawer)."""

    id: int
    contact_id: int
    outcome: str
    reason: dict[str, Any] | None
    at: datetime
    version: int
    email: str | None
    first_name: str | None
    last_name: str | None


@dataclass(frozen=True, slots=True)
class TimelineRecord:
    """One line of a contact's timeline: an event, a step of an automation, or a message."""

    kind: str  # event | step | message
    id: int
    at: datetime
    name: str  # the event's name, the step's node, the message's template (or channel)
    status: str | None  # the step's outcome, the message's status
    reason: Any  # the step's reason, the message's error, the event's properties
    automation: str | None = None
    version: int | None = None
    channel: str | None = None


# --- reports ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportMessageRecord(_FromRow):
    message_id: int
    workspace_id: int
    contact_id: int
    automation: str
    node: str
    template: str
    template_version: int
    channel: str
    campaign: str
    sent_at: datetime | None
    last_opened_at: datetime | None
    last_clicked_at: datetime | None
    opened: bool
    clicked: bool
    opened_any: bool
    clicked_any: bool


@dataclass(frozen=True, slots=True)
class ReportFigure:
    """One summed figure of a report: its day, the dimensions asked for, metric and value."""

    day: str
    dims: tuple[Any, ...]
    metric: str
    value: int


@dataclass(frozen=True, slots=True)
class FunnelNodeRecord:
    node: str
    reached: int
    converted: int


# --- live edits ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunPositionRecord:
    """Active runs of an automation at one node of one version."""

    version: int
    node: str
    count: int


@dataclass(frozen=True, slots=True)
class MovedRunRecord:
    """A run a live edit moved to a node of the new version."""

    id: int
    contact_id: int


# --- builder drafts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AutomationDraftRecord(_FromRow):
    """An unfinished definition saved from the builder (its YAML text, valid or not)."""

    id: int
    workspace_id: int
    automation_key: str | None
    name: str
    source: str
    created_at: datetime
    updated_at: datetime
