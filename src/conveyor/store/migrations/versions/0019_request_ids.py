"""Request ids carried into background work: the event a request wrote, the run it started and
the messages that run queued all name the request, so one id follows a lead from the HTTP call
to the email.

Revision ID: 0019
Revises: 0013
Create Date: 2026-12-01 23:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0013"
branch_labels = None
depends_on = None

TABLES = ("events", "runs", "outbox")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")
