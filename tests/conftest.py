"""Shared fixtures: every store/API test runs on SQLite and on PostgreSQL (a database per run)."""

from __future__ import annotations

import compileall
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher, profiles
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from conveyor.bootstrap import Conveyor, bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store import migrate
from conveyor.store.database import make_engine
from conveyor.store.schema import metadata
from tests.support import secret_guard

CHEAP_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)

PG_SERVER = os.environ.get(
    "CONVEYOR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_PG = os.environ.get("CONVEYOR_REQUIRE_POSTGRES") == "1"


def pytest_configure(config: pytest.Config) -> None:
    """The secret guard (no secret the suite makes in any log line, issue 18); and Conveyor's
    bytecode, written once before the workers start. Where PYTHONDONTWRITEBYTECODE is set (as in
    the Docker image and on this machine) every `conveyor` subprocess the e2e tests start —
    hundreds — compiled its ~170 modules from source again (~0.35 s of CPU each).

    The variable is dropped for the processes the run starts: with it, each pytest process (the
    two xdist workers, the runs test_secret_guard.py makes) rewrote the asserts of every test
    module and of the plugins (Hypothesis, schemathesis, xdist, anyio: ~400 modules) from
    source, ~7 s of CPU, where pytest otherwise keeps them in __pycache__ (git-ignored)."""
    secret_guard.install(config)
    if not hasattr(config, "workerinput"):
        compileall.compile_dir(Path(migrate.__file__).parents[1], quiet=2)  # src/conveyor
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        sys.dont_write_bytecode = False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server, migrated once, dropped at the end."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as exc:
        admin.dispose()
        if REQUIRE_PG:
            pytest.fail(
                f"PostgreSQL is required (CONVEYOR_REQUIRE_POSTGRES=1) but unreachable: {exc}"
            )
        pytest.skip(f"PostgreSQL not reachable at {PG_SERVER}")
    # The tests kill Conveyor's processes, never the database server: a commit need not wait
    # for its WAL flush (a server crash could lose the last commits, nothing else). Every
    # connection to this database, the CLI's and servers' subprocesses included.
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "conveyor.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def empty_database(url: str) -> None:
    """Empty every table and restart every id. DELETE, children first, then one setval per
    sequence: ~2 ms on a test's few rows, where TRUNCATE (new files for 46 tables) takes
    100-500 ms — paid by every PostgreSQL test."""
    engine = create_engine(url)
    deletes = "; ".join(f'DELETE FROM "{t.name}"' for t in reversed(metadata.sorted_tables))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(deletes)
            sequences = conn.exec_driver_sql(
                "SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) FROM pg_sequences"
            ).scalars()
            restart = ", ".join(f"setval('{name}', 1, false)" for name in sequences)
            if restart:
                conn.exec_driver_sql(f"SELECT {restart}")
    except IntegrityError:  # rows referring to each other in a cycle: the slow, sure way
        names = ", ".join(t.name for t in metadata.sorted_tables)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "conveyor.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    empty_database(url)
    return url


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def conveyor(database_url: str, tmp_path: Path, clock: SimulatedClock) -> Iterator[Conveyor]:
    # The tests' peers (SMTP sink, Twilio stand-in, webhook receivers) live on loopback, which
    # the address guard refuses unless the operator allows it: these tests' operator does.
    # test_outbound_guard.py shows what happens without.
    settings = Settings(database_url=database_url, data_dir=tmp_path, webhook_allow="127.0.0.1/32")
    app = bootstrap(settings, clock=clock)
    # argon2id at its cheapest parameters: each hash and check at Conveyor's (the library's
    # defaults, 64 MiB and 3 passes) costs ~0.15 s of CPU, and the panel's tests make hundreds.
    # The hashes name their parameters, so either hasher checks the other's;
    # test_panel.py::test_passwords_are_stored_as_argon2id_at_full_cost covers the real cost.
    app.signin.hasher = CHEAP_HASHER
    yield app
    app.close()
