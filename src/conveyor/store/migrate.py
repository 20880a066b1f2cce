"""Schema migrations: upgrade a database to the newest schema and check it matches the models.

Alembic (with Mako and Pygments, ~0.25 s of CPU) is imported only when there is something to
migrate: every `conveyor` command upgrades the schema first, and it is nearly always at `HEAD`
already."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from conveyor.store.schema import metadata

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. A new migration changes it too:
# tests/integration/test_migrations.py fails until it does.
HEAD = "0023_outbox_claim_index"


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


# Held (PostgreSQL) while migrating: processes that start together (API replicas, workers,
# `conveyor db upgrade`) migrate one after the other; the later ones find the schema at head.
MIGRATION_LOCK = 0x636F6E6D


def upgrade(engine: Engine, revision: str = "head") -> None:
    if revision == "head" and _revisions(engine) == [HEAD]:
        return  # what alembic would conclude, without importing it
    from alembic import command

    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def _revisions(engine: Engine) -> list[str]:
    """The revisions alembic recorded in the database; none before the first migration."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return []
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(engine: Engine) -> list[Any]:
    """What `alembic check` would report: differences between the database and the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def autogenerate(engine: Engine, message: str) -> None:
    """For developers: write a new migration from the difference to the models."""
    from alembic import command

    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)
