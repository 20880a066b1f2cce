"""Lead scoring: a workspace's scoring model, contacts' named scores and the points rules awarded.

A change of a workspace's scoring model bumps its `catalog_version` (as fields and lists do), so
processes that keep the parsed model read it again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 03:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "scoring_models",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("definition", Json, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("epoch", When, nullable=False),
        sa.Column("armed", Json, nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name="fk_scoring_models_workspace_id_workspaces",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", name="pk_scoring_models"),
    )
    op.create_table(
        "contact_scores",
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("score", sa.String(40), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("norm", sa.Double(), nullable=False),
        sa.Column("fixed", sa.Double(), nullable=False),
        sa.Column("checked_at", When, nullable=False),
        sa.Column("cross_at", When, nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_contact_scores_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("contact_id", "score", name="pk_contact_scores"),
    )
    op.create_index(
        "ix_contact_scores_workspace_score", "contact_scores", ["workspace_id", "score"]
    )
    op.create_index("ix_contact_scores_cross_at", "contact_scores", ["cross_at"])
    op.create_table(
        "score_awards",
        sa.Column("id", BigId, nullable=False),
        sa.Column("contact_id", BigId, nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.String(40), nullable=False),
        sa.Column("rule", sa.String(64), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("at", When, nullable=False),
        sa.Column("points", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name="fk_score_awards_contact_id_contacts",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_score_awards"),
    )
    op.create_index(
        "ix_score_awards_contact_score", "score_awards", ["contact_id", "score", "rule", "at"]
    )
    if op.get_bind().dialect.name == "postgresql":
        # conveyor_catalog_changed() is migration 0006's
        op.execute(
            "CREATE TRIGGER scoring_models_catalog AFTER INSERT OR UPDATE OR DELETE "
            "ON scoring_models FOR EACH ROW EXECUTE FUNCTION conveyor_catalog_changed()"
        )
    else:
        for action, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            op.execute(
                f"CREATE TRIGGER scoring_models_catalog_{action.lower()} AFTER {action} "
                f"ON scoring_models BEGIN UPDATE workspaces SET catalog_version = "
                f"catalog_version + 1 WHERE id = {row}.workspace_id; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER scoring_models_catalog ON scoring_models")
    else:
        for action in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER scoring_models_catalog_{action}")
    op.drop_index("ix_score_awards_contact_score", table_name="score_awards")
    op.drop_table("score_awards")
    op.drop_index("ix_contact_scores_cross_at", table_name="contact_scores")
    op.drop_index("ix_contact_scores_workspace_score", table_name="contact_scores")
    op.drop_table("contact_scores")
    op.drop_table("scoring_models")
