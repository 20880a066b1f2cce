"""Split tests with an automatic winner, and the deliverability guard per mailbox provider.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-01 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("automation_id", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("winner", sa.String(64), nullable=True),
        sa.Column("started_at", When, nullable=False),
        sa.Column("checked_at", When, nullable=False),
        sa.Column("decided_at", When, nullable=True),
        sa.Column("decision", Json, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_experiments_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name="fk_experiments_automation_id_automations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("automation_id", "node", name="uq_experiments_automation_node"),
    )
    op.create_table(
        "provider_health",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000), nullable=True),
        sa.Column("stats", Json, nullable=False),
        sa.Column("since", When, nullable=True),
        sa.Column("changed_at", When, nullable=False),
        sa.Column("checked_at", When, nullable=False),
        sa.Column("hour_start", When, nullable=True),
        sa.Column("hour_sent", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_provider_health_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "provider", name="pk_provider_health"),
    )


def downgrade() -> None:
    op.drop_table("provider_health")
    op.drop_table("experiments")
