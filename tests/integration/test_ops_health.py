"""`/healthz` and `/readyz` against a real server: each readiness part goes wrong for real (no
worker, a stale heartbeat, the schema behind, the database gone) and the answer says which."""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from conveyor import logs
from conveyor.bootstrap import Conveyor
from tests.conftest import PG_SERVER


def readyz(client: httpx.Client) -> tuple[int, dict]:
    r = client.get("/readyz")
    return r.status_code, r.json()


def beat(conveyor: Conveyor, worker: str = "test:1") -> None:
    conveyor.ops.beat(worker, "all", conveyor.clock.now())


def test_liveness_looks_at_nothing(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert client.get("/health").json() == {"status": "ok"}  # the old one stays


def test_ready_needs_a_fresh_worker_heartbeat(conveyor: Conveyor, client: httpx.Client, clock) -> None:
    status, body = readyz(client)
    assert status == 503 and body["status"] == 503 and body["title"] == "Not ready"
    assert body["detail"] == "not ready: workers"
    checks = body["checks"]
    assert set(checks) == {"database", "schema", "workers", "event_log", "due_runs"}
    assert checks["database"]["ok"] and checks["schema"]["ok"]
    assert checks["workers"] == {"ok": False, "fresh": 0, "stale": 0, "last_beat_seconds_ago": None}
    assert checks["schema"]["revision"] == checks["schema"]["head"]

    beat(conveyor)
    status, body = readyz(client)
    assert status == 200, body
    assert body["status"] == "ready" and body["checks"]["workers"]["fresh"] == 1

    clock.advance(timedelta(seconds=conveyor.settings.ready_heartbeat_seconds + 1))
    status, body = readyz(client)
    assert status == 503 and body["checks"]["workers"]["stale"] == 1

    beat(conveyor)  # the same worker beats again: one row, fresh
    status, body = readyz(client)
    assert status == 200 and body["checks"]["workers"] | {"last_beat_seconds_ago": 0} == {
        "ok": True, "fresh": 1, "stale": 0, "last_beat_seconds_ago": 0
    }
    conveyor.ops.stopped("test:1")  # a worker that stops cleanly takes its row away
    assert readyz(client)[0] == 503


def test_backlogs_over_their_limits_are_not_ready(
    conveyor: Conveyor, client: httpx.Client, tenant
) -> None:
    beat(conveyor)
    assert readyz(client)[0] == 200
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": [
        {"type": "track", "userId": f"u{i}", "event": "visited"} for i in range(5)
    ]})
    assert r.status_code == 200, r.text
    conveyor.settings.ready_max_log_lag = 3
    status, body = readyz(client)
    assert status == 503 and not body["checks"]["event_log"]["ok"]
    assert body["checks"]["event_log"]["lag"] >= 5
    conveyor.engine.run_until_idle()  # the consumers catch up
    status, body = readyz(client)
    assert status == 200 and body["checks"]["event_log"]["lag"] == 0


def test_schema_behind_is_not_ready(conveyor: Conveyor, client: httpx.Client, database_url) -> None:
    beat(conveyor)
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
            conn.execute(text("UPDATE alembic_version SET version_num = '0005'"))
        status, body = readyz(client)
        assert status == 503
        assert body["checks"]["schema"] == {"ok": False, "revision": "0005", "head": head}
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :h"), {"h": head})
        engine.dispose()
    assert readyz(client)[0] == 200


def test_not_ready_while_the_database_is_unreachable_then_recovers(
    conveyor: Conveyor, client: httpx.Client, database_url: str
) -> None:
    beat(conveyor)
    assert readyz(client)[0] == 200
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    handler.addFilter(logs.StampRequestId())
    logging.getLogger("conveyor.ops").addHandler(handler)
    try:
        with unreachable(conveyor, database_url):
            r = client.get("/readyz", headers={"X-Request-ID": "probe-db"})
    finally:
        logging.getLogger("conveyor.ops").removeHandler(handler)
    assert r.status_code == 503
    # The service's warning, logged in the route's worker thread, carries the request's id.
    assert [(rec.getMessage().split(":")[0], rec.request_id) for rec in seen] == [
        ("readiness check database failed", "probe-db")
    ]
    with unreachable(conveyor, database_url):
        status, body = readyz(client)
        assert status == 503, body
        assert list(body["checks"]) == ["database"]
        assert body["checks"]["database"]["ok"] is False
        assert "Error" in body["checks"]["database"]["error"]
        assert client.get("/healthz").status_code == 200  # alive, just not ready
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "conveyor_database_up 0.0" in metrics.text
    status, body = readyz(client)  # the pool reconnects by itself
    assert status == 200, body
    assert "conveyor_database_up 1.0" in client.get("/metrics").text


class unreachable:
    """PostgreSQL: the database is renamed away (its sessions ended), then back. SQLite: the
    file is moved away and a directory stands in its place, so no connection can open it."""

    def __init__(self, conveyor: Conveyor, url: str) -> None:
        self.conveyor, self.url = conveyor, make_url(url)

    def __enter__(self) -> None:
        name = self.url.database
        if self.url.get_backend_name() == "sqlite":
            self.conveyor.store.db.engine.dispose()  # the last connection checkpoints the WAL
            self.path = Path(name)
            os.rename(self.path, f"{self.path}.away")
            self.path.mkdir()
            return
        self.admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": name})
            conn.execute(text(f'ALTER DATABASE "{name}" RENAME TO "{name}_away"'))

    def __exit__(self, *exc: object) -> None:
        name = self.url.database
        if self.url.get_backend_name() == "sqlite":
            self.conveyor.store.db.engine.dispose()
            self.path.rmdir()
            os.rename(f"{self.path}.away", self.path)
            return
        with self.admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}_away" RENAME TO "{name}"'))
        self.admin.dispose()


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_operator_routes_need_no_key_and_carry_a_request_id(client: httpx.Client, path: str) -> None:
    r = client.get(path, headers={"X-Request-ID": "probe-42"})
    assert r.status_code in (200, 503)
    assert r.headers["x-request-id"] == "probe-42"
    fresh = client.get(path).headers["x-request-id"]
    assert len(fresh) == 32 and fresh != client.get(path).headers["x-request-id"]
    bad = client.get(path, headers={"X-Request-ID": "a b\tc" * 40}).headers["x-request-id"]
    assert bad != "a b\tc" * 40  # an id not safe to log is replaced
