"""The engine core: a skipped entry is a step of no run; workspaces carry a catalog version.

`steps.run_id` may be NULL: an entry that was skipped is a step of no run (the timeline says why
it did not enter). `workspaces.catalog_version` goes up, by trigger, whenever the workspace's
fields, lists, automations or segments change, or its name or settings, so a process may keep
what it derived from them (parsed conditions, the trigger index) until it does.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# table → the columns whose update changes the catalog (None: any)
WATCHED = {
    "field_definitions": None,
    "lists": None,
    "automations": None,
    "segments": "key, name, condition",
}


def upgrade() -> None:
    with op.batch_alter_table("steps") as batch:
        batch.alter_column("run_id", existing_type=sa.BigInteger(), nullable=True)
    op.add_column(
        "workspaces",
        sa.Column("catalog_version", sa.Integer(), server_default="0", nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION conveyor_catalog_changed() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    UPDATE workspaces SET catalog_version = catalog_version + 1
                    WHERE id = OLD.workspace_id;
                ELSE
                    UPDATE workspaces SET catalog_version = catalog_version + 1
                    WHERE id = NEW.workspace_id;
                END IF;
                RETURN NULL;
            END $$ LANGUAGE plpgsql
            """
        )
        for table, columns in WATCHED.items():
            update = f"UPDATE OF {columns}" if columns else "UPDATE"
            op.execute(
                f"CREATE TRIGGER {table}_catalog AFTER INSERT OR {update} OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION conveyor_catalog_changed()"
            )
        op.execute(
            """
            CREATE FUNCTION conveyor_workspace_changed() RETURNS trigger AS $$
            BEGIN
                NEW.catalog_version := OLD.catalog_version + 1;
                RETURN NEW;
            END $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER workspaces_catalog BEFORE UPDATE OF name, settings ON workspaces "
            "FOR EACH ROW EXECUTE FUNCTION conveyor_workspace_changed()"
        )
        # A log consumer's high-water mark in one statement (see Database.write_connection):
        # a VOLATILE function takes a fresh snapshot per statement, so the newest id is read
        # after every writer in flight has finished.
        op.execute(
            """
            CREATE FUNCTION conveyor_follow_log(lock_key bigint) RETURNS bigint AS $$
            DECLARE
                high bigint;
            BEGIN
                PERFORM pg_advisory_lock(lock_key);
                BEGIN
                    SELECT coalesce(max(id), 0) INTO high FROM events;
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
        return
    for table, columns in WATCHED.items():
        for action, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            when = f"UPDATE OF {columns}" if action == "UPDATE" and columns else action
            op.execute(
                f"CREATE TRIGGER {table}_catalog_{action.lower()} AFTER {when} ON {table} "
                f"BEGIN UPDATE workspaces SET catalog_version = catalog_version + 1 "
                f"WHERE id = {row}.workspace_id; END"
            )
    op.execute(
        "CREATE TRIGGER workspaces_catalog AFTER UPDATE OF name, settings ON workspaces "
        "BEGIN UPDATE workspaces SET catalog_version = catalog_version + 1 WHERE id = NEW.id; END"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in (*WATCHED, "workspaces"):
            op.execute(f"DROP TRIGGER {table}_catalog ON {table}")
        op.execute("DROP FUNCTION conveyor_catalog_changed()")
        op.execute("DROP FUNCTION conveyor_workspace_changed()")
        op.execute("DROP FUNCTION conveyor_follow_log(bigint)")
    else:
        op.execute("DROP TRIGGER workspaces_catalog")
        for table in WATCHED:
            for action in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER {table}_catalog_{action}")
    with op.batch_alter_table("workspaces") as batch:
        batch.drop_column("catalog_version")
    op.execute("DELETE FROM steps WHERE run_id IS NULL")
    with op.batch_alter_table("steps") as batch:
        batch.alter_column("run_id", existing_type=sa.BigInteger(), nullable=False)
