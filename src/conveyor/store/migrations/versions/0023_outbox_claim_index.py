"""The outbox's claim reads the pending messages in its own order from an index: (status,
priority DESC, send_after, id). Before, one statement asked for pending-and-due OR
lease-ran-out, and PostgreSQL read and sorted every due message to keep the first few hundred —
a newsletter's whole audience on every claim (tests/integration/test_queue_plans.py).

Revision ID: 0023_outbox_claim_index
Revises: 0022_due_runs_index
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_outbox_claim_index"
down_revision = "0022_due_runs_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_outbox_claim", "outbox", ["status", sa.text("priority DESC"), "send_after", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_claim", table_name="outbox")
