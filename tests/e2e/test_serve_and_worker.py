"""`conveyor worker` alone runs delivery too: a real subprocess, a real SMTP server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from tests.support.smtp import SmtpSink

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
DEADLINE = 60  # seconds; generous for a loaded machine, never a measure of speed


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE} s")
        time.sleep(0.1)
    return result


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def test_conveyor_worker_alone_delivers_email(env, database_url, tmp_path, smtp):
    app = bootstrap(Settings(database_url=database_url, data_dir=tmp_path))
    workspace, _ = app.workspaces.create("shop")
    content = {"subject": "Welcome", "text": "Hello {{ contact.email }}"}
    app.templates.save(workspace, "welcome", "email", content)
    mailing = {
        "key": "welcome",
        "triggers": [{"event": "signed_up"}],
        "nodes": [{"id": "mail", "type": "send_email", "template": "welcome"}],
    }
    app.automations.apply(workspace, mailing)
    app.automations.set_status(workspace, "welcome", "active")
    calls = [
        {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}},
        {"type": "track", "userId": "u1", "event": "signed_up"},
    ]
    assert app.ingest.calls(workspace, calls).accepted == 2
    app.close()
    env = {
        **env,
        "CONVEYOR_SMTP_URL": smtp.url,
        "CONVEYOR_EMAIL_FROM": "Shop <shop@example.com>",
    }
    with subprocess.Popen(
        [CONVEYOR, "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as worker:
        try:
            [received] = eventually(lambda: smtp.to("ada@example.com"), "email delivered")
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=DEADLINE)[0]
    assert received.message["Subject"] == "Welcome"
    assert "Hello ada@example.com" in received.part("plain")
    assert worker.returncode == 0, output
    assert "SIGTERM: stopping after the current transaction" in output
