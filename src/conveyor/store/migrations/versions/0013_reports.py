"""Reports: daily rollups kept from the event log, and what they remember of each message.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

KEY = (
    "workspace_id",
    "day",
    "automation",
    "node",
    "template",
    "template_version",
    "channel",
    "campaign",
    "metric",
)


When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "report_daily",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("automation", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name=op.f("pk_report_daily")),
    )
    op.create_index(
        "ix_report_daily_overview",
        "report_daily",
        ["workspace_id", "day", "automation", "channel", "metric", "value"],
    )
    op.create_index(
        "ix_report_daily_automation",
        "report_daily",
        ["workspace_id", "automation", "day", "node", "metric", "value"],
    )
    op.create_index(
        "ix_report_daily_template",
        "report_daily",
        ["workspace_id", "template", "day", "template_version", "metric", "value"],
    )
    op.create_table(
        "report_messages",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.BigInteger(), nullable=False),
        sa.Column("automation", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("campaign", sa.String(length=64), nullable=False),
        sa.Column("sent_at", When, nullable=True),
        sa.Column("last_opened_at", When, nullable=True),
        sa.Column("last_clicked_at", When, nullable=True),
        sa.Column("opened", sa.Boolean(), nullable=False),
        sa.Column("clicked", sa.Boolean(), nullable=False),
        sa.Column("opened_any", sa.Boolean(), nullable=False),
        sa.Column("clicked_any", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_report_messages")),
    )
    op.create_index("ix_report_messages_contact", "report_messages", ["workspace_id", "contact_id"])


def downgrade() -> None:
    op.drop_table("report_messages")
    op.drop_table("report_daily")
