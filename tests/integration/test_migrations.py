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
