"""Operating Conveyor through the real CLI: the first admin key written to a file, JSON log
lines with request ids and no secret in them, and backups of a live SQLite database."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from tests.e2e.test_serve_and_worker import DEADLINE, eventually, serving
from tests.support import cli
from tests.support.flows import settle
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.e2e
BODY_MARK = "Zebra-7731-secret-coupon"  # in every email body; must never reach a log


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_key_file_json_logs_and_no_secret_in_any_line(env, tmp_path, smtp):
    key_file = tmp_path / "secrets" / "admin.key"
    env = {
        **env,
        "CONVEYOR_BOOTSTRAP_KEY_FILE": str(key_file),
        "CONVEYOR_WEBHOOK_ALLOW": "127.0.0.1/32",
        "CONVEYOR_HEARTBEAT_SECONDS": "0.2",
    }
    secrets: list[str] = []
    with serving(env) as served:
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        admin_key = key_file.read_text().strip()
        secrets.append(admin_key)
        assert admin_key.startswith("cvk_") and f"is in {key_file}" in served.output()
        admin = {"Authorization": f"Bearer {admin_key}"}
        with httpx.Client(base_url=served.url, headers=admin, timeout=30) as api:
            r = api.post(
                "/keys",
                json={"kind": "write", "name": "site"},
                headers={"X-Request-ID": "make-key-1"},
            )
            assert r.status_code == 201, r.text
            assert r.headers["x-request-id"] == "make-key-1"
            write_key = r.json()["key"]
            secrets.append(write_key)
            assert (
                api.put(
                    "/channels/email",
                    json={"from": "Shop <news@shop.example>", "smtp_url": smtp.url},
                ).status_code
                == 200
            )
            assert (
                api.post(
                    "/templates",
                    json={
                        "key": "hello",
                        "channel": "email",
                        "content": {"subject": "Hello", "text": f"Your code: {BODY_MARK}"},
                    },
                ).status_code
                == 200
            )
            assert (
                api.post(
                    "/automations",
                    json={
                        "key": "hello",
                        "triggers": [{"event": "signed_up"}],
                        "nodes": [{"id": "mail", "type": "send_email", "template": "hello"}],
                    },
                ).status_code
                == 200
            )
            assert api.patch("/automations/hello", json={"status": "active"}).status_code == 200
            tracked = httpx.post(
                f"{served.url}/v1/batch",
                auth=(write_key, ""),
                json={
                    "batch": [
                        {
                            "type": "identify",
                            "userId": "u1",
                            "traits": {"email": "ada@example.com"},
                        },
                        {"type": "track", "userId": "u1", "event": "signed_up"},
                    ]
                },
            )
            assert tracked.status_code == 200, tracked.text
            [mail] = eventually(lambda: smtp.to("ada@example.com"), "email delivered")
            assert BODY_MARK in mail.part("plain")
            assert api.get("/contacts/999999").status_code == 404
            ready = eventually(lambda: api.get("/readyz").status_code == 200, "ready")
            assert ready
    output = served.output()
    for secret in secrets:
        assert secret not in output
    assert BODY_MARK not in output
    assert "cvk_" not in output  # not even a masked prefix: nothing logs keys

    lines = json_lines(output)
    assert lines and all({"ts", "level", "logger", "pid", "msg"} <= set(line) for line in lines)
    requests = [line for line in lines if line["logger"] == "conveyor.api" and "route" in line]
    [made] = [line for line in requests if line.get("request_id") == "make-key-1"]
    assert made["method"] == "POST" and made["route"] == "/keys" and made["status"] == 201
    assert isinstance(made["workspace_id"], int) and isinstance(made["ms"], float)
    [missing] = [line for line in requests if line["status"] == 404]
    assert missing["route"] == "/contacts/{contact_id}"  # the template, never the path
    assert any(line["route"] == "/v1/batch" and line["status"] == 200 for line in requests)
    assert len({line["request_id"] for line in requests}) == len(requests)
    assert any("Uvicorn running" in line["msg"] for line in lines)


def _rows(url: str) -> dict[str, set[tuple]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                "contacts": set(conn.execute(text("SELECT id, email FROM contacts"))),
                "runs": set(conn.execute(text("SELECT id, contact_id, status, node FROM runs"))),
                "messages": set(
                    conn.execute(text("SELECT id, status, recipient, idempotency_key FROM outbox"))
                ),
            }
    finally:
        engine.dispose()


def test_backup_of_a_live_sqlite_database_restores_everything(tmp_path, smtp):
    live = tmp_path / "live"
    settings = Settings(data_dir=live, webhook_allow="127.0.0.1/32")
    app = bootstrap(settings)
    app.upgrade_schema()
    workspace, _ = app.workspaces.create("shop")
    app.channels.configure(
        workspace, "email", {"from": "Shop <s@shop.example>", "smtp_url": smtp.url}
    )
    app.templates.save(
        workspace, "hi", "email", {"subject": "Hi", "text": "Hi {{ contact.email }}"}
    )
    app.automations.apply(
        workspace,
        {
            "key": "hi",
            "triggers": [{"event": "signed_up"}],
            "nodes": [
                {"id": "mail", "type": "send_email", "template": "hi"},
                {"id": "pause", "type": "wait", "for": "3 days"},
                {"id": "tag", "type": "add_tag", "tag": "done"},
            ],
        },
    )
    app.automations.set_status(workspace, "hi", "active")
    calls = []
    for i in range(60):
        calls += [
            {"type": "identify", "userId": f"u{i}", "traits": {"email": f"p{i}@example.com"}},
            {"type": "track", "userId": f"u{i}", "event": "signed_up"},
        ]
    assert app.ingest.calls(workspace, calls).accepted == 120
    settle(app)
    assert len(smtp.messages) == 60
    url = settings.resolved_database_url()
    before = _rows(url)
    assert len(before["contacts"]) == 60 and len(before["runs"]) == 60
    assert len(before["messages"]) == 60

    # Writers keep going while the backup is taken.
    stop = threading.Event()

    def keep_writing() -> None:
        n = 0
        while not stop.is_set():
            app.ingest.calls(
                workspace,
                [
                    {
                        "type": "identify",
                        "userId": f"late{n}",
                        "traits": {"email": f"late{n}@example.com"},
                    }
                ],
            )
            n += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        env = {**os.environ, "CONVEYOR_DATA_DIR": str(live)}
        env.pop("CONVEYOR_DATABASE_URL", None)
        backup = tmp_path / "backups" / "conveyor-1.db"
        done = cli.run(["backup", str(backup)], env=env, timeout=DEADLINE)
    finally:
        stop.set()
        writer.join()
    assert done.returncode == 0, done.stderr
    assert f"backed up to {backup}" in done.stdout and "60 runs" in done.stdout
    again = cli.run(["backup", str(backup)], env=env, timeout=DEADLINE)
    assert again.returncode == 1 and "exists" in again.stderr  # never overwrites a backup
    app.close()

    fresh = tmp_path / "fresh"
    env_fresh = {**env, "CONVEYOR_DATA_DIR": str(fresh)}
    done = cli.run(["restore", str(backup)], env=env_fresh, timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    restored = _rows(f"sqlite:///{fresh / 'conveyor.db'}")
    for kind in ("contacts", "runs", "messages"):
        assert before[kind] <= restored[kind], kind  # every row, as it was
    assert restored["contacts"] - before["contacts"]  # and the writes that made it in
    assert all(email.startswith("late") for _, email in restored["contacts"] - before["contacts"])

    # The restored database works: its runs go on, its keys are there.
    app = bootstrap(Settings(data_dir=fresh))
    assert [w.name for w in app.workspaces.all()] == ["shop"]
    app.close()
    # A database that holds data is not overwritten by mistake.
    refused = cli.run(["restore", str(backup)], env=env_fresh, timeout=DEADLINE)
    assert refused.returncode == 1 and "--replace" in refused.stderr
    replaced = cli.run(["restore", "--replace", str(backup)], env=env_fresh, timeout=DEADLINE)
    assert replaced.returncode == 0, replaced.stderr
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(Path(backup).read_bytes()[:4096] + b"\0" * 100)
    bad = cli.run(["restore", "--replace", str(damaged)], env=env_fresh, timeout=DEADLINE)
    assert bad.returncode == 1 and "damaged.db" in bad.stderr


def test_backup_on_postgresql_points_to_pg_dump(postgres_url, tmp_path):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": postgres_url, "CONVEYOR_DATA_DIR": str(tmp_path)}
    done = cli.run(["backup", str(tmp_path / "x.db")], env=env, timeout=DEADLINE)
    assert done.returncode == 1 and "pg_dump" in done.stderr
