"""The migrated schema equals the models on both dialects (what `alembic check` verifies)."""

from __future__ import annotations

from conveyor.store import migrate
from conveyor.store.database import make_engine


def test_migrations_produce_exactly_the_models(database_url):
    engine = make_engine(database_url)
    try:
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert migrate.schema_differences(engine) == []
        migrate.upgrade(engine)  # a second upgrade is a no-op
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()


def test_head_names_the_newest_migration():
    """`upgrade` skips alembic when the database is at `HEAD`: a new migration must move it."""
    assert migrate.head_revision() == migrate.HEAD


def test_an_upgrade_from_an_older_revision_still_migrates(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrate.upgrade(engine, "0020_builder")
        assert migrate.current_revision(engine) == "0020_builder"
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.HEAD
    finally:
        engine.dispose()
