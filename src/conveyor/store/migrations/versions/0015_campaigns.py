"""Campaigns (newsletters) with their frozen audiences, bulk actions on audiences, and the
campaign each outbox message was queued by (issue 14).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), nullable=True))
        batch.create_index("ix_outbox_campaign_status", ["campaign_id", "status"])
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("schedule", JSON, nullable=True),
        sa.Column("throttle_per_hour", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("audience_count", sa.Integer(), nullable=True),
        sa.Column("notes", JSON, nullable=False),
        sa.Column("ab_test", JSON, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_campaigns_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("workspace_id", "key", name="uq_campaigns_workspace_key"),
    )
    op.create_index("ix_campaigns_status_starts_at", "campaigns", ["status", "starts_at"])
    op.create_table(
        "campaign_recipients",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "contact_id", name=op.f("pk_campaign_recipients")),
    )
    op.create_table(
        "bulk_jobs",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("audience", JSON, nullable=False),
        sa.Column("params", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("cursor", sa.BigInteger(), nullable=False),
        sa.Column("outcomes", JSON, nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_bulk_jobs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
    )
    op.create_index("ix_bulk_jobs_status", "bulk_jobs", ["status", "id"])


def downgrade() -> None:
    op.drop_index("ix_bulk_jobs_status", table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
    op.drop_table("campaign_recipients")
    op.drop_index("ix_campaigns_status_starts_at", table_name="campaigns")
    op.drop_table("campaigns")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_campaign_status")
        batch.drop_column("campaign_id")
