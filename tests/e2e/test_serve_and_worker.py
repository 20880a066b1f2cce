"""`conveyor serve` runs the engine in a worker process it restarts and never leaves behind, and
`conveyor worker` alone runs delivery too: real subprocesses, a real SMTP server."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from tests.support.smtp import SmtpSink, free_port

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))
DEADLINE = 60  # seconds; generous for a loaded machine, never a measure of speed
TAGGING = {
    "key": "welcome",
    "triggers": [{"event": "signed_up"}],
    "nodes": [{"id": "tag", "type": "add_tag", "tag": "welcomed"}],
}


def eventually(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + DEADLINE
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE} s")
        time.sleep(0.1)
    return result


class Served:
    """A running `conveyor serve`; a thread collects its output so the pipe never fills up."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def found(self, pattern: str) -> list[str]:
        return [m.group(1) for line in list(self.lines) if (m := re.search(pattern, line))]

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in self.found(r"started worker 1 \(pid (\d+)\)")]

    def output(self) -> str:
        return "".join(self.lines)


@contextlib.contextmanager
def serving(env: dict[str, str], *options: str) -> Iterator[Served]:
    port = free_port()
    proc = subprocess.Popen(
        [CONVEYOR, "serve", "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(proc, f"http://127.0.0.1:{port}")
    try:
        eventually(lambda: served.found("(Uvicorn running)") or proc.poll() is not None, "start")
        assert proc.poll() is None, served.output()
        yield served
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(DEADLINE)
        served.reader.join(DEADLINE)  # to the end of the output, then the pipe can close
        assert proc.stdout is not None
        proc.stdout.close()


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped (a container's init may not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def tags(api: httpx.Client, user: str) -> list[str]:
    r = api.get("/contacts/lookup", params={"external_id": user})
    return r.json()["tags"] if r.status_code == 200 else []


def test_serve_runs_the_engine_in_a_worker_process_and_restarts_it(env):
    with serving(env) as served:
        key = served.found(r"(cvk_[\w-]+)")[0]
        [first] = eventually(served.worker_pids, "worker started")
        assert first != served.proc.pid
        with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}) as api:
            assert api.post("/automations", json=TAGGING).status_code == 200
            assert api.patch("/automations/welcome", json={"status": "active"}).status_code == 200
            r = api.post("/v1/track", json={"userId": "u1", "event": "signed_up"})
            assert r.status_code == 200, r.text
            eventually(lambda: "welcomed" in tags(api, "u1"), "tag from the worker")

            os.kill(first, signal.SIGKILL)
            pids = eventually(lambda: served.worker_pids()[1:], "worker started again")
            assert "killed by SIGKILL" in served.output()
            r = api.post("/v1/track", json={"userId": "u2", "event": "signed_up"})
            assert r.status_code == 200, r.text
            eventually(lambda: "welcomed" in tags(api, "u2"), "tag from the new worker")
    assert served.proc.returncode == 0, served.output()
    assert gone(pids[0]), "serve stopped but left its worker running"
    assert "stopped" in served.output()


def test_a_worker_does_not_outlive_a_killed_serve(env):
    with serving(env) as served:
        [worker] = eventually(served.worker_pids, "worker started")
        served.proc.kill()
        served.proc.wait()
        eventually(lambda: gone(worker), "worker exit after serve was SIGKILLed")


def test_serve_without_a_worker_starts_none(env):
    with serving(env, "--no-worker") as served:
        pass
    assert "No worker" in served.output() and not served.worker_pids()


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


def test_a_worker_serves_its_own_metrics(env, database_url, tmp_path):
    """Steps, runs and the worker's own database pool, on its metrics port (Prometheus text)."""
    app = bootstrap(Settings(database_url=database_url, data_dir=tmp_path))
    workspace, _ = app.workspaces.create("shop")
    app.automations.apply(workspace, TAGGING)
    app.automations.set_status(workspace, "welcome", "active")
    assert app.ingest.calls(workspace, [{"type": "track", "userId": "u1",
                                         "event": "signed_up"}]).accepted == 1
    app.close()
    port = free_port()
    with subprocess.Popen(
        [CONVEYOR, "worker", "--metrics-port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as worker:
        try:
            def scraped() -> str | None:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                except httpx.HTTPError:
                    return None
                return text if 'conveyor_steps_total{node_type="add_tag"' in text else None

            text = eventually(scraped, "the worker's metrics after its first step")
        finally:
            worker.send_signal(signal.SIGTERM)
            output = worker.communicate(timeout=DEADLINE)[0]
    assert worker.returncode == 0, output
    assert re.search(r'conveyor_runs_advanced_total\{why="entered"\} [1-9]', text), text
    assert re.search(r'conveyor_db_pool_connections\{state="open"\} [1-9]', text), text
