"""Three `conveyor worker` processes on one PostgreSQL share a backlog of 10,000 runs: every run
is done exactly once (one run per contact, each node once, every tag once), and all three beat
their heartbeats into /readyz's check while they work."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from conveyor.bootstrap import bootstrap
from conveyor.domain.contacts import SystemEvent
from conveyor.settings import Settings
from tests.conftest import PG_SERVER

pytestmark = pytest.mark.e2e
RUNS = 10_000
WORKERS = 3
DEADLINE = 600  # seconds; generous for a loaded machine, never a measure of speed


@pytest.fixture
def fresh_postgres():
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError:
        admin.dispose()
        pytest.skip("PostgreSQL not reachable")
    yield admin.url.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_three_workers_do_every_run_exactly_once(fresh_postgres, tmp_path):
    app = bootstrap(Settings(database_url=fresh_postgres, data_dir=tmp_path))
    app.upgrade_schema()
    workspace, _ = app.workspaces.create("crowd")
    app.automations.apply(
        workspace,
        {
            "key": "crowd",
            "triggers": [{"event": "go"}],
            "nodes": [
                {"id": "first", "type": "add_tag", "tag": "first"},
                {"id": "second", "type": "add_tag", "tag": "second"},
            ],
        },
    )
    app.automations.set_status(workspace, "crowd", "active")
    for start in range(0, RUNS, 1000):
        calls = [
            {"type": "track", "userId": f"u{i}", "event": "go"} for i in range(start, start + 1000)
        ]
        assert app.ingest.calls(workspace, calls).accepted == 1000

    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": fresh_postgres,
        "CONVEYOR_DATA_DIR": str(tmp_path),
        "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
        "CONVEYOR_ENGINE_BATCH": "500",
    }  # smaller ticks: the three share the backlog
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli.main", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WORKERS)
    ]
    engine = create_engine(fresh_postgres)
    most_fresh = 0
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            most_fresh = max(
                most_fresh, app.ops.readiness().as_dict()["checks"]["workers"]["fresh"]
            )
            with engine.connect() as conn:
                done = conn.execute(
                    text("SELECT count(*) FROM runs WHERE status = 'finished'")
                ).scalar_one()
            if done >= RUNS:
                break
            assert time.monotonic() < deadline, f"{done} of {RUNS} runs finished"
            assert all(w.poll() is None for w in workers), [w.stderr.read() for w in workers]
            time.sleep(0.5)
    finally:
        for w in workers:
            w.terminate()
        errors = [w.communicate(timeout=60)[1] for w in workers]
    assert all(w.returncode == 0 for w in workers), errors
    assert most_fresh == WORKERS  # each worker's heartbeat was seen by /readyz's check
    with engine.connect() as conn:
        one = lambda sql: conn.execute(text(sql)).scalar_one()  # noqa: E731
        assert one("SELECT count(*) FROM runs") == RUNS
        assert one("SELECT count(DISTINCT contact_id) FROM runs") == RUNS
        assert one("SELECT count(*) FROM runs WHERE status <> 'finished'") == 0
        assert (
            one(
                "SELECT count(*) FROM (SELECT run_id, node, outcome FROM steps "
                "GROUP BY run_id, node, outcome HAVING count(*) > 1) t"
            )
            == 0
        )
        assert one("SELECT count(*) FROM steps WHERE run_id IS NULL") == 0  # no skipped entry
        assert one("SELECT count(*) FROM contact_tags") == 2 * RUNS
        assert (
            one(f"SELECT count(*) FROM events WHERE name = '{SystemEvent.TAG_ADDED}'") == 2 * RUNS
        )
    engine.dispose()
    # Stopped cleanly: their heartbeat rows are gone, so /readyz no longer counts them.
    assert app.ops.readiness().as_dict()["checks"]["workers"]["fresh"] == 0
    app.close()
