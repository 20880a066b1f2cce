"""Processes that start together on a fresh PostgreSQL database all migrate it without error:
the first one migrates, the others wait on its advisory lock and find the schema at head."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from conveyor.store import migrate
from conveyor.store.database import make_engine
from tests.conftest import PG_SERVER


def test_concurrent_upgrades_of_a_fresh_database_all_succeed() -> None:
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip("PostgreSQL not reachable")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    def upgrade(engine) -> None:
        start.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert migrate.current_revision(engines[0]) == migrate.head_revision()
        assert migrate.schema_differences(engines[0]) == []
    finally:
        for engine in engines:
            engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
