"""`conveyor serve --api-workers N`: several API processes on one port (PostgreSQL), each with its
own ingest writer; SQLite refuses with one line."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_several_api_processes_share_the_port_and_commit_every_call(env, database_url):
    port = str(free_port())
    command = [CONVEYOR, "serve", "--no-worker", "--api-workers", "2", "--port", port]
    if database_url.startswith("sqlite"):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "more than one API process needs PostgreSQL" in done.stdout + done.stderr
        return
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            output: list[str] = []
            for line in proc.stdout:
                output.append(line)
                if "shown only this once" in line:
                    key = next(proc.stdout).strip()
                    break
            reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
            reader.start()
            url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120

            def started() -> set[str]:  # each process announces itself once it serves
                return set(re.findall(r"Started server process \[(\d+)\]", "".join(output)))

            while len(started()) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, "".join(output)
                time.sleep(0.2)
            assert httpx.get(f"{url}/health").status_code == 200
            headers = {"Authorization": f"Bearer {key}"}

            def send(n: int) -> None:
                for i in range(5):  # a new connection each: either process may take it
                    body = {"userId": f"u{n % 3}", "event": "seen", "messageId": f"m-{n}-{i}"}
                    r = httpx.post(f"{url}/v1/track", headers=headers, json=body, timeout=60)
                    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(send, range(8)))
            r = httpx.get(f"{url}/events", headers=headers, params={"name": "seen", "limit": 100})
            assert len(r.json()["items"]) == 40
            r = httpx.get(f"{url}/contacts", headers=headers, params={"limit": 100})
            assert sorted(c["external_id"] for c in r.json()["items"]) == ["u0", "u1", "u2"]
        finally:
            proc.terminate()
            proc.wait(30)
