"""The due-runs index gains `id`: the claim (`ORDER BY wake_at, id LIMIT n`) then reads its runs
in order from the index. With (status, wake_at) alone PostgreSQL read and sorted every due run
to keep the first n — all of them at once when a campaign's wait ends for 100,000 contacts
together (tests/integration/test_queue_plans.py).

Revision ID: 0022_due_runs_index
Revises: 0021_reports
Create Date: 2026-12-03 16:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0022_due_runs_index"
down_revision = "0021_reports"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_status_wake_at_id", "runs", ["status", "wake_at", "id"])
    op.drop_index("ix_runs_status_wake_at", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_status_wake_at", "runs", ["status", "wake_at"])
    op.drop_index("ix_runs_status_wake_at_id", table_name="runs")
