"""Reports without scans: the overview's coarser rollups ((day, automation, channel, metric) and
(day, metric)), the
funnel folded from the step log (report_funnel, its position in report_progress), and the
step log's high-water mark on PostgreSQL. Both are backfilled from what is already there.

Revision ID: 0021_reports
Revises: 0020_builder
Create Date: 2026-12-02 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from conveyor.store.reports import ReportQueries

revision = "0021_reports"
down_revision = "0020_builder"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 20_000


def upgrade() -> None:
    op.create_table(
        "report_overview",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("automation", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "day", "automation", "channel", "metric", name="pk_report_overview"
        ),
    )
    op.create_table(
        "report_totals",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "day", "metric", name="pk_report_totals"),
    )
    op.create_table(
        "report_funnel",
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("automation", sa.String(length=64), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("node", sa.String(length=64), nullable=False),
        sa.Column("reached", sa.BigInteger(), nullable=False),
        sa.Column("converted", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "workspace_id", "automation", "day", "node", name="pk_report_funnel"
        ),
    )
    op.create_table(
        "report_progress",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_report_progress"),
    )
    # The overview's rollup is report_daily's sums over fewer dimensions.
    op.execute(
        "INSERT INTO report_overview (workspace_id, day, automation, channel, metric, value) "
        "SELECT workspace_id, day, automation, channel, metric, sum(value) FROM report_daily "
        "GROUP BY workspace_id, day, automation, channel, metric"
    )
    op.execute(
        "INSERT INTO report_totals (workspace_id, day, metric, value) "
        "SELECT workspace_id, day, metric, sum(value) FROM report_daily "
        "GROUP BY workspace_id, day, metric"
    )
    op.create_index(
        "ix_report_totals_day", "report_totals", ["workspace_id", "day", "metric", "value"]
    )
    op.create_index(
        "ix_report_overview_day",
        "report_overview",
        ["workspace_id", "day", "automation", "channel", "metric", "value"],
    )
    op.create_index(
        "ix_report_overview_automation",
        "report_overview",
        ["workspace_id", "automation", "day", "channel", "metric", "value"],
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # conveyor_follow_log's twin for the step log (see Database.high_water).
        op.execute(
            """
            CREATE FUNCTION conveyor_follow_steps(lock_key bigint) RETURNS bigint AS $$
            DECLARE
                high bigint;
            BEGIN
                PERFORM pg_advisory_lock(lock_key);
                BEGIN
                    SELECT coalesce(max(id), 0) INTO high FROM steps;
                EXCEPTION WHEN OTHERS THEN
                    PERFORM pg_advisory_unlock(lock_key);
                    RAISE;
                END;
                PERFORM pg_advisory_unlock(lock_key);
                PERFORM pg_advisory_xact_lock_shared(lock_key);
                RETURN high;
            END $$ LANGUAGE plpgsql VOLATILE
            """
        )
    # The funnel of every step already logged, folded as the worker folds new ones (upgrades
    # run with the workers stopped: every step there is committed).
    queries = ReportQueries(bind, bind.dialect.name)
    up_to = queries.last_step()
    queries.steps_position()  # the position's row, at 0
    position = 0
    while position < up_to:
        position = queries.fold_steps(position, up_to, BACKFILL_BATCH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION conveyor_follow_steps(bigint)")
    op.drop_table("report_progress")
    op.drop_table("report_funnel")
    op.drop_index("ix_report_totals_day", table_name="report_totals")
    op.drop_table("report_totals")
    op.drop_index("ix_report_overview_automation", table_name="report_overview")
    op.drop_index("ix_report_overview_day", table_name="report_overview")
    op.drop_table("report_overview")
