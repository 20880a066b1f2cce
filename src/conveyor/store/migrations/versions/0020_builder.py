"""The builder's drafts: unfinished automation definitions, kept apart from live versions.

Revision ID: 0020_builder
Revises: 0019
Create Date: 2026-12-01 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_builder"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "automation_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("automation_key", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_automation_drafts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_drafts")),
    )
    op.create_index(
        "ix_automation_drafts_workspace", "automation_drafts", ["workspace_id", "updated_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_automation_drafts_workspace", table_name="automation_drafts")
    op.drop_table("automation_drafts")
