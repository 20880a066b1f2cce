"""Tables of the Conveyor database, one MetaData for SQLite and PostgreSQL; Alembic migrates it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only makes an INTEGER PRIMARY KEY an auto-incrementing rowid; PostgreSQL wants BIGINT.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on both dialects."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    # Signs links and tokens (double opt-in, later tracking and unsubscribe links).
    Column("secret", String(64), nullable=False),
    Column("settings", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Goes up (a trigger, see migration 0006) when its fields, lists, automations or segments
    # change: what a process derives from them stays valid until it does.
    Column("catalog_version", Integer, nullable=False, server_default="0"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("kind", String(10), nullable=False),
    Column("name", String(100), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_api_keys_workspace_id", "workspace_id"),
)

field_definitions = Table(
    "field_definitions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("label", String(255), nullable=True),
    Column("choices", Json, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_field_definitions_workspace_key"),
)

lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("double_opt_in", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_lists_workspace_key"),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("external_id", String(255), nullable=True),
    Column("email", String(320), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("first_name", String(255), nullable=True),
    Column("last_name", String(255), nullable=True),
    Column("timezone", String(64), nullable=True),
    Column("locale", String(35), nullable=True),
    Column("score", Integer, nullable=False),
    Column("fields", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # NULLs are distinct in both dialects, so anonymous contacts and contacts without email coexist.
    UniqueConstraint("workspace_id", "external_id", name="uq_contacts_workspace_external_id"),
    UniqueConstraint("workspace_id", "email", name="uq_contacts_workspace_email"),
    Index("ix_contacts_workspace_phone", "workspace_id", "phone"),  # SMS replies find their sender
    # The panel's contact pages, newest first (keyset on id) within a workspace (issue 15).
    Index("ix_contacts_workspace_id_id", "workspace_id", "id"),
)

contact_aliases = Table(
    "contact_aliases",
    metadata,
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("anonymous_id", String(255), nullable=False),
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "anonymous_id", name="pk_contact_aliases"),
    Index("ix_contact_aliases_contact_id", "contact_id"),
)

contact_tags = Table(
    "contact_tags",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("tag", String(100), nullable=False),
    Column("workspace_id", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("contact_id", "tag", name="pk_contact_tags"),
    Index("ix_contact_tags_workspace_tag", "workspace_id", "tag"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("contact_id", "list_id", name="pk_subscriptions"),
    Index("ix_subscriptions_list_status", "list_id", "status"),
)

# The append-only log. `id` only grows, so consumers can keep a cursor on it.
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("contact_id", BigInteger, nullable=True),
    Column("kind", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("properties", Json, nullable=False),
    Column("context", Json, nullable=True),
    Column("message_id", String(255), nullable=True),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    # The HTTP request that wrote it (or whose run did): logs, runs and messages name it too.
    Column("request_id", String(128), nullable=True),
    UniqueConstraint("workspace_id", "message_id", name="uq_events_workspace_message_id"),
    Index("ix_events_contact_id", "contact_id", "id"),
    Index("ix_events_workspace_name_timestamp", "workspace_id", "name", "timestamp"),
)

segments = Table(
    "segments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("condition", Json, nullable=False),
    # True when membership can change with the clock alone (windows, relative dates): swept.
    Column("time_based", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("refreshed_at", UTCDateTime, nullable=True),
    UniqueConstraint("workspace_id", "key", name="uq_segments_workspace_key"),
)

segment_members = Table(
    "segment_members",
    metadata,
    Column("segment_id", Integer, ForeignKey("segments.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("entered_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("segment_id", "contact_id", name="pk_segment_members"),
    Index("ix_segment_members_contact_id", "contact_id"),
)

# Where each consumer of the event log has got to; advanced in the same transaction as its effects.
log_cursors = Table(
    "log_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

automations = Table(
    "automations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # draft, active, paused, archived
    Column("version", Integer, nullable=False),  # the version new entries take
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_automations_workspace_key"),
)

automation_versions = Table(
    "automation_versions",
    metadata,
    Column(
        "automation_id", Integer, ForeignKey("automations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("version", Integer, nullable=False),
    Column("definition", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("automation_id", "version", name="pk_automation_versions"),
)

# One contact's journey through one automation version.
runs = Table(
    "runs",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column(
        "automation_id", Integer, ForeignKey("automations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("version", Integer, nullable=False),
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(16), nullable=False),  # queued, active, finished
    Column("node", String(64), nullable=True),
    Column("state", Json, nullable=False),  # what the current node waits for
    Column("wake_at", UTCDateTime, nullable=True),  # NULL: only an event wakes it
    Column("steps", Integer, nullable=False),
    Column("trigger", Json, nullable=False),  # the trigger event's properties
    Column("outcome", String(32), nullable=True),  # completed, goal_reached, exited, ended
    Column("entered_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("request_id", String(128), nullable=True),  # the request whose event started it
    # The claim of due runs reads them in (wake_at, id) order straight from this index.
    Index("ix_runs_status_wake_at_id", "status", "wake_at", "id"),
    Index("ix_runs_contact_automation", "contact_id", "automation_id"),
    Index("ix_runs_automation_node", "automation_id", "status", "node"),
)

# The audit trail: every node executed for a run, with its outcome and the reason.
steps = Table(
    "steps",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("run_id", BigInteger, nullable=True),  # NULL: an entry that was skipped
    Column("contact_id", BigInteger, nullable=False),
    Column("automation_id", Integer, nullable=False),
    Column("version", Integer, nullable=False),
    Column("node", String(64), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("reason", Json, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_steps_contact_id", "contact_id", "id"),
    Index("ix_steps_automation_node", "automation_id", "node", "outcome"),
    Index("ix_steps_run_id", "run_id"),
)

# Messages produced by steps: the outbox the channels drain. A row is pending until it is due
# (`send_after`), then claimed (`sending`, leased until `lease_until`) and ends sent, failed
# (permanently), dead (retries exhausted) or skipped (suppressed by the send policy).
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("template", String(255), nullable=True),
    Column("contact_id", BigInteger, nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("automation_id", Integer, nullable=True),
    Column("version", Integer, nullable=True),
    Column("node", String(64), nullable=True),
    Column("message_class", String(16), nullable=False),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("payload", Json, nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("send_after", UTCDateTime, nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("recipient", String(320), nullable=True),
    Column("content", Json, nullable=True),  # what was sent: subject, links, template version
    Column("provider_id", String(255), nullable=True),
    Column("error", String(1000), nullable=True),
    Column("sent_at", UTCDateTime, nullable=True),
    # The campaign that queued it (campaigns, issue 14); NULL for automation messages.
    Column("campaign_id", Integer, nullable=True),
    Column("request_id", String(128), nullable=True),  # the request its run started from
    Index("ix_outbox_status_id", "status", "id"),
    Index("ix_outbox_status_send_after", "status", "send_after"),
    Index("ix_outbox_contact_id", "contact_id", "id"),
    Index("ix_outbox_provider_id", "provider_id"),
    Index("ix_outbox_campaign_status", "campaign_id", "status"),
)
# The claim reads the pending in (priority, send_after, id) order straight from this index.
Index(
    "ix_outbox_claim",
    outbox.c.status,
    outbox.c.priority.desc(),
    outbox.c.send_after,
    outbox.c.id,
)

templates = Table(
    "templates",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("version", Integer, nullable=False),  # the version new messages use
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_templates_workspace_key"),
)

template_versions = Table(
    "template_versions",
    metadata,
    Column("template_id", Integer, ForeignKey("templates.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", Json, nullable=False),  # subject, preheader, html, text, mjml, body, …
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("template_id", "version", name="pk_template_versions"),
)

# Addresses no marketing message goes to: unsubscribed everywhere, bounced, complained, or put
# there by hand. `address` is a lowercased email, "@domain", or an E.164 phone number.
suppressions = Table(
    "suppressions",
    metadata,
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("channel", String(16), nullable=False),  # email, sms
    Column("address", String(320), nullable=False),
    Column("reason", String(16), nullable=False),  # unsubscribed, bounced, complained, manual
    Column("detail", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "channel", "address", name="pk_suppressions"),
)

# A contact's own send policy, on top of the workspace's (e.g. "at most one email a week").
contact_policies = Table(
    "contact_policies",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("policy", Json, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Rate limits shared by every worker process (an SMTP server's `rate=`): a token bucket per key,
# refilled from the time each take says it is (seconds since the epoch, wall clock).
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("stamp", Float, nullable=False),
)

# --- CRM: the team, pipelines, deals, tasks ---------------------------------------------------

# The people of a workspace: owners of contacts and deals, assignees of tasks. `password_hash`
# stays NULL until the web UI gives members a login.
members = Table(
    "members",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(255), nullable=False),
    Column("email", String(320), nullable=False),
    Column("role", String(16), nullable=False),  # owner | admin | marketer | sales | viewer
    Column("password_hash", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "email", name="uq_members_workspace_email"),
)

# A contact's owner: its own table, so the contact row (read by every engine tick) stays as is.
contact_owners = Table(
    "contact_owners",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("member_id", Integer, ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Where the next round-robin assignment over a role's members starts.
rotations = Table(
    "rotations",
    metadata,
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("role", String(16), nullable=False),
    Column("last_member_id", Integer, nullable=False),
    PrimaryKeyConstraint("workspace_id", "role", name="pk_rotations"),
)

# A pipeline's stages are ordered [{name, probability}] in its row: a deal names its stage.
pipelines = Table(
    "pipelines",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("stages", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_pipelines_workspace_key"),
)

# Custom deal fields, typed like contact fields.
deal_fields = Table(
    "deal_fields",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("type", String(16), nullable=False),
    Column("label", String(255), nullable=True),
    Column("choices", Json, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("workspace_id", "key", name="uq_deal_fields_workspace_key"),
)

# Money in minor units (cents): exact on both dialects, no float rounding in forecasts.
deals = Table(
    "deals",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("pipeline_id", Integer, ForeignKey("pipelines.id", ondelete="CASCADE"), nullable=False),
    Column("title", String(255), nullable=False),
    Column("value_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("owner_id", Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
    Column("stage", String(64), nullable=False),
    Column("status", String(8), nullable=False),  # open | won | lost
    Column("lost_reason", String(500), nullable=True),
    Column("expected_close", String(10), nullable=True),  # YYYY-MM-DD
    Column("fields", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("closed_at", UTCDateTime, nullable=True),
    Index("ix_deals_workspace_pipeline", "workspace_id", "pipeline_id", "status"),
    Index("ix_deals_contact_id", "contact_id"),
)

# More contacts of a deal besides its main one.
deal_contacts = Table(
    "deal_contacts",
    metadata,
    Column("deal_id", BigInteger, ForeignKey("deals.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("deal_id", "contact_id", name="pk_deal_contacts"),
)

notes = Table(
    "notes",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("contact_id", BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=True),
    Column("deal_id", BigInteger, ForeignKey("deals.id", ondelete="CASCADE"), nullable=True),
    Column("author_id", Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
    Column("body", String(10000), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_notes_deal_id", "deal_id"),
    Index("ix_notes_contact_id", "contact_id"),
)

# `overdue_at`: when the sweep recorded task.overdue (once; NULL until then).
tasks = Table(
    "tasks",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("type", String(8), nullable=False),  # call | email | meeting | todo
    Column("title", String(255), nullable=False),
    Column("due_at", UTCDateTime, nullable=True),
    Column("assignee_id", Integer, ForeignKey("members.id", ondelete="SET NULL"), nullable=True),
    Column("contact_id", BigInteger, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=True),
    Column("deal_id", BigInteger, ForeignKey("deals.id", ondelete="CASCADE"), nullable=True),
    Column("done_at", UTCDateTime, nullable=True),
    Column("overdue_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_tasks_workspace_due", "workspace_id", "done_at", "overdue_at", "due_at"),
)

# Lead scoring (see conveyor.domain.scoring): a workspace's model, each contact's named scores
# (value at t = norm * 2^(-(t - epoch) / half_life) + fixed), and the points each rule awarded.
scoring_models = Table(
    "scoring_models",
    metadata,
    Column(
        "workspace_id",
        Integer,
        ForeignKey("workspaces.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("definition", Json, nullable=False),
    Column("version", Integer, nullable=False),
    Column("epoch", UTCDateTime, nullable=False),  # decay's reference moment, set on recompute
    # the score_crossed thresholds contacts' `cross_at` were computed for ({score: [t, …]})
    Column("armed", Json, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

contact_scores = Table(
    "contact_scores",
    metadata,
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("score", String(40), nullable=False),
    Column("workspace_id", Integer, nullable=False),
    Column("norm", Double, nullable=False),
    Column("fixed", Double, nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),  # crossings are settled up to here
    Column("cross_at", UTCDateTime, nullable=True),  # when decay next crosses a threshold
    PrimaryKeyConstraint("contact_id", "score", name="pk_contact_scores"),
    Index("ix_contact_scores_workspace_score", "workspace_id", "score"),
    Index("ix_contact_scores_cross_at", "cross_at"),
)

score_awards = Table(
    "score_awards",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("contact_id", BigId, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("workspace_id", Integer, nullable=False),
    Column("score", String(40), nullable=False),
    Column("rule", String(64), nullable=False),
    Column("event_id", BigInteger, nullable=True),
    Column("at", UTCDateTime, nullable=False),
    Column("points", Double, nullable=False),
    Index("ix_score_awards_contact_score", "contact_id", "score", "rule", "at"),
)

# One row per running worker process (host:pid), moved every few seconds by its loop: `/readyz`
# and the metrics read from it whether the background work is alive.
worker_heartbeats = Table(
    "worker_heartbeats",
    metadata,
    Column("worker", String(128), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
)

# --- Workspace as code: what `conveyor apply DIR` last applied --------------------------------

# One row per resource a folder put in place: the digest of the definition as stored right after
# that apply. A plan that finds another digest now knows the workspace changed outside the files.
applied_resources = Table(
    "applied_resources",
    metadata,
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("kind", String(32), nullable=False),
    Column("key", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source", String(1024), nullable=True),
    Column("applied_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("workspace_id", "kind", "key", name="pk_applied_resources"),
)

# --- Campaigns and bulk actions on audiences (issue 14) ---------------------------------------

# A campaign (newsletter): one template to an audience of lists/segments/tags minus exclusions.
# draft → scheduled → sending → sent, or paused / cancelled. `starts_at`: when the worker freezes
# the audience and queues its messages (for local-time sends, when UTC+14 reaches the time).
campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("key", String(64), nullable=False),
    Column("name", String(255), nullable=False),
    Column("channel", String(16), nullable=False),  # email | sms
    Column("template", String(64), nullable=False),
    Column("audience", Json, nullable=False),  # {lists, segments, tags, exclude: {…}}
    Column("schedule", Json, nullable=True),  # {at} | {date, local_time, late}
    Column("throttle_per_hour", Integer, nullable=True),
    Column("status", String(16), nullable=False),
    Column("starts_at", UTCDateTime, nullable=True),
    Column("audience_count", Integer, nullable=True),  # the frozen audience, once started
    Column("notes", Json, nullable=False),  # what the campaign's report should say
    # {variants, sample, wait, metric, event} and, once decided, {decision, winner}
    Column("ab_test", Json, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime, nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    UniqueConstraint("workspace_id", "key", name="uq_campaigns_workspace_key"),
    Index("ix_campaigns_status_starts_at", "status", "starts_at"),
)

# The audience frozen when a campaign starts; `seq` numbers it by contact id (throttle slots).
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("campaign_id", Integer, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("timezone", String(64), nullable=True),  # the contact's, frozen: queueing needs no join
    PrimaryKeyConstraint("campaign_id", "contact_id", name="pk_campaign_recipients"),
)

# A bulk action over an audience, run by the worker in chunks: `cursor` is the last contact id
# done, moved in the same transaction as the chunk's effects (never a contact twice).
bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", BigId, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("action", String(16), nullable=False),  # enroll tag untag subscribe unsubscribe delete
    Column("audience", Json, nullable=False),
    Column("params", Json, nullable=False),  # {automation} | {tag} | {list}
    Column("status", String(16), nullable=False),  # queued running done failed cancelled
    Column("total", Integer, nullable=False),  # the audience counted when it was confirmed
    Column("done", Integer, nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("outcomes", Json, nullable=False),  # {summary: count}: what each contact got
    Column("error", String(1000), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Index("ix_bulk_jobs_status", "status", "id"),
)

# --- Split tests and the deliverability guard (experiments) --------------------------------
# A split node with a `test:`: its latest decision (conveyor.domain.experiments), kept per
# automation and node across versions; a decided winner is what every later contact takes.
experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column(
        "automation_id", Integer, ForeignKey("automations.id", ondelete="CASCADE"), nullable=False
    ),
    Column("node", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # collecting, running, decided, inconclusive
    Column("winner", String(64), nullable=True),
    Column("started_at", UTCDateTime, nullable=False),  # the first contact took a path
    Column("checked_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime, nullable=True),
    Column("decision", Json, nullable=False),  # the Decision's statistics, and the test's spec
    UniqueConstraint("automation_id", "node", name="uq_experiments_automation_node"),
)

# Per workspace and mailbox provider: whether marketing email to it flows, is throttled or is
# paused, why, and the hour's throttled sends so far.
provider_health = Table(
    "provider_health",
    metadata,
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("provider", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # ok, throttled, paused
    Column("reason", String(1000), nullable=True),
    Column("stats", Json, nullable=False),  # the rates it was last judged on
    Column("since", UTCDateTime, nullable=True),  # rates count from here (the last resume)
    Column("changed_at", UTCDateTime, nullable=False),
    Column("checked_at", UTCDateTime, nullable=False),
    Column("hour_start", UTCDateTime, nullable=True),  # throttled: the hour being counted
    Column("hour_sent", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("workspace_id", "provider", name="pk_provider_health"),
)

# --- The web panel: sign-in sessions and the one-time setup link (issue 15) ---------------
# A signed-in member's session. Only a SHA-256 of the cookie's token is kept, so a copy of the
# database signs nobody in; `csrf` is the per-session token every form of the panel carries.
web_sessions = Table(
    "web_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("member_id", Integer, ForeignKey("members.id", ondelete="CASCADE"), nullable=False),
    Column("csrf", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),  # moved at most once a minute
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_web_sessions_member_id", "member_id"),
)

# The link `conveyor serve` prints while no member can sign in: it creates the first owner.
setup_tokens = Table(
    "setup_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)

# --- Reports: KPIs and revenue attribution -------------------------------------------------------

# Daily rollups the reports consumer keeps from the event log. One row per workspace-local day,
# dimension key and metric; a dimension a message does not have is '' (or 0), never NULL, so the
# key is a primary key on both dialects. `campaign` is part of the key already (always '' until
# messages carry a campaign): adding that dimension later needs no migration of this table.
report_daily = Table(
    "report_daily",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("day", String(10), nullable=False),  # YYYY-MM-DD in the workspace's timezone
    Column("automation", String(64), nullable=False),
    Column("node", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "workspace_id",
        "day",
        "automation",
        "node",
        "template",
        "template_version",
        "channel",
        "campaign",
        "metric",
        name="pk_report_daily",
    ),
    # Covering indexes: a report's sums read only the index, never the table (the rollup of a
    # busy workspace has ~1,500 rows a day; fetching each from the table was most of the time).
    Index(
        "ix_report_daily_overview",
        "workspace_id",
        "day",
        "automation",
        "channel",
        "metric",
        "value",
    ),
    Index(
        "ix_report_daily_automation", "workspace_id", "automation", "day", "node", "metric", "value"
    ),
    Index(
        "ix_report_daily_template",
        "workspace_id",
        "template",
        "day",
        "template_version",
        "metric",
        "value",
    ),
)

# What reports remember of each message: its key, and the first and last human open and click
# (unique counts, and the touches that attribution credits). Kept by the same consumer.
report_messages = Table(
    "report_messages",
    metadata,
    Column("message_id", BigInteger, primary_key=True, autoincrement=False),
    Column("workspace_id", Integer, nullable=False),
    Column("contact_id", BigInteger, nullable=False),
    Column("automation", String(64), nullable=False),
    Column("node", String(64), nullable=False),
    Column("template", String(64), nullable=False),
    Column("template_version", Integer, nullable=False),
    Column("channel", String(16), nullable=False),
    Column("campaign", String(64), nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("last_opened_at", UTCDateTime, nullable=True),  # a person's open
    Column("last_clicked_at", UTCDateTime, nullable=True),  # a person's click
    Column("opened", Boolean, nullable=False),  # a person opened it
    Column("clicked", Boolean, nullable=False),  # a person clicked it
    Column("opened_any", Boolean, nullable=False),  # anyone, machines too
    Column("clicked_any", Boolean, nullable=False),
    Index("ix_report_messages_contact", "workspace_id", "contact_id"),
)

# The overview's rollup: report_daily's sums per day, automation, channel and metric only
# (kept beside it by the same consumer), so a 30-day overview reads days x automations x
# channels x metrics rows, not every node, template version and campaign of each day.
report_overview = Table(
    "report_overview",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("day", String(10), nullable=False),
    Column("automation", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint(
        "workspace_id", "day", "automation", "channel", "metric", name="pk_report_overview"
    ),
    # Covering, as report_daily's: the sums read only an index.
    Index(
        "ix_report_overview_day", "workspace_id", "day", "automation", "channel", "metric", "value"
    ),
    Index(
        "ix_report_overview_automation",
        "workspace_id",
        "automation",
        "day",
        "channel",
        "metric",
        "value",
    ),
)

# The overview's series: report_daily's sums per day and metric only (days x metrics rows).
report_totals = Table(
    "report_totals",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("day", String(10), nullable=False),
    Column("metric", String(32), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "day", "metric", name="pk_report_totals"),
    Index("ix_report_totals_day", "workspace_id", "day", "metric", "value"),
)

# An automation's funnel, folded from the step log: per day (workspace timezone) and node, the
# runs that first reached the node that day, and how many of those reached a goal at or after it
# (counted on the day they reached the node, when the goal comes).
report_funnel = Table(
    "report_funnel",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("automation", String(64), nullable=False),
    Column("day", String(10), nullable=False),
    Column("node", String(64), nullable=False),
    Column("reached", BigInteger, nullable=False),
    Column("converted", BigInteger, nullable=False),
    PrimaryKeyConstraint("workspace_id", "automation", "day", "node", name="pk_report_funnel"),
)

# How far the reports have folded a log other than the event log (the step log: "steps").
report_progress = Table(
    "report_progress",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
)

# The builder's unfinished definitions: YAML text as the marketer left it (it may not parse),
# for a new automation (no key yet) or beside an existing one, never touching its live version.
automation_drafts = Table(
    "automation_drafts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "workspace_id", Integer, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    ),
    Column("automation_key", String(64), nullable=True),  # the automation it edits, if any
    Column("name", String(255), nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_automation_drafts_workspace", "workspace_id", "updated_at"),
)
