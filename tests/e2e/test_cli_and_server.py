"""The `conveyor` CLI (each command a process of its own, forked with the imports done: see
tests/support/cli.py) and `conveyor serve` started from its script, as a new user runs them."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import cli

pytestmark = pytest.mark.e2e
CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def run(env, *args, check=True, input=None):  # noqa: A002 - subprocess.run's name
    """`conveyor ARGS`, a process of its own forked from one that has the imports (see
    tests/support/cli.py); `serving` below starts the real script."""
    result = cli.run(args, env=env, input=input, timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"conveyor {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(env):
    """`conveyor serve` on a free port; yields its URL and everything it printed until ready."""
    port = free_port()
    with subprocess.Popen(
        [CONVEYOR, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            lines = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                lines.append(line)
                if "Uvicorn running" in line or not line:
                    break
            yield f"http://127.0.0.1:{port}", "".join(lines)
        finally:
            proc.terminate()
            proc.wait(15)


def test_serve_prints_a_key_once_and_answers(env):
    with serving(env) as (base, output):
        assert f"Conveyor {base}" in output, output
        key = re.search(r"(cvk_[\w-]+)", output).group(1)
        auth = {"Authorization": f"Bearer {key}"}
        r = httpx.post(
            f"{base}/v1/batch",
            headers=auth,
            json={
                "batch": [
                    {
                        "type": "identify",
                        "userId": "u1",
                        "traits": {"email": "ada@example.com", "plan": "pro"},
                    },
                    {
                        "type": "track",
                        "userId": "u1",
                        "event": "order_completed",
                        "properties": {"total": 42},
                    },
                ]
            },
        )
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
        c = httpx.get(
            f"{base}/contacts/lookup", headers=auth, params={"email": "ada@example.com"}
        ).json()
        assert c["fields"] == {"plan": "pro"}
        assert httpx.get(f"{base}/docs").status_code == 200
        assert httpx.get(f"{base}/openapi.json").json()["info"]["title"] == "Conveyor"
    # A second start reuses the workspace and prints no new key.
    with serving(env) as (base, output):
        assert "cvk_" not in output and "Uvicorn running" in output
        assert httpx.get(f"{base}/contacts", headers=auth).status_code == 200


def test_workspace_and_key_commands(env):
    created = run(env, "workspace", "create", "shop")
    admin_key = re.search(r"(cvk_[\w-]+)", created.stdout).group(1)
    assert run(env, "workspace", "create", "shop", check=False).returncode == 1
    write = run(env, "key", "create", "--workspace", "shop", "--kind", "write", "--name", "site")
    assert write.stdout.strip().startswith("cvk_")
    listing = run(env, "key", "list", "--workspace", "shop").stdout
    assert "site" in listing and "write" in listing and admin_key not in listing
    key_id = re.search(r"│\s*(\d+)\s*│\s*write", listing).group(1)
    run(env, "key", "revoke", key_id, "--workspace", "shop")
    again = run(env, "key", "revoke", key_id, "--workspace", "shop", check=False)
    assert again.returncode == 1 and "revoked already" in again.stderr
    bad = run(env, "key", "create", "--workspace", "shop", "--kind", "root", check=False)
    assert bad.returncode == 1 and "admin" in bad.stderr
    assert (
        "no workspace named 'nope'"
        in run(env, "key", "list", "--workspace", "nope", check=False).stderr
    )


def test_contacts_import_reports_lines_and_is_idempotent(env, tmp_path):
    run(env, "workspace", "create", "default")
    csv = tmp_path / "people.csv"
    csv.write_text(
        "email,first_name,Segment\nada@example.com,Ada,vip\nbroken,Bob,x\ngrace@example.com,Grace,y\n"
    )
    first = run(
        env,
        "contacts",
        "import",
        str(csv),
        "--list",
        "newsletter",
        "--map",
        "Segment=tags",
        check=False,
    )
    assert first.returncode == 2
    assert "3 rows: 2 created, 0 updated, 0 unchanged, 1 failed" in first.stdout
    assert f"{csv}:3: email:" in first.stderr
    assert "created list 'newsletter'" in first.stdout
    second = run(
        env,
        "contacts",
        "import",
        str(csv),
        "--list",
        "newsletter",
        "--map",
        "Segment=tags",
        check=False,
    )
    assert "0 created, 0 updated, 2 unchanged, 1 failed" in second.stdout
    missing = run(env, "contacts", "import", str(csv), "--map", "Nope=email", check=False)
    assert missing.returncode == 1 and "no column named 'Nope'" in missing.stderr


def test_db_upgrade(env):
    assert "schema at revision" in run(env, "db", "upgrade").stdout


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "segments"


def test_segment_count_and_apply_from_a_file(env, tmp_path):
    run(env, "workspace", "create", "default")
    csv = tmp_path / "people.csv"
    csv.write_text("email,tags\na@example.com,vip\nb@example.com,\n")
    run(env, "contacts", "import", str(csv))
    vip = tmp_path / "vip.yaml"
    vip.write_text("key: vips\nname: VIPs\ncondition:\n  tag: vip\n")
    assert run(env, "segment", "count", str(vip)).stdout.strip() == "1"
    assert "created segment 'vips': 1 members" in run(env, "segment", "apply", str(vip)).stdout
    assert "updated segment 'vips'" in run(env, "segment", "apply", str(vip)).stdout
    assert run(env, "segment", "count", str(EXAMPLES / "good-customers.yaml")).stdout.strip() == "0"
    listing = run(env, "segment", "list").stdout
    assert "vips" in listing
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "condition:\n  all:\n    - tag: vip\n    - event: order_completed\n      count: {most: 3}\n"
    )
    result = run(env, "segment", "count", str(bad), check=False)
    assert result.returncode == 1 and "all.1.count" in result.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("condition:\n  all: [\n")
    result = run(env, "segment", "count", str(broken), check=False)
    assert result.returncode == 1 and "broken.yaml:3" in result.stderr


def test_serve_refuses_oversized_and_too_many_headers_with_431(env):
    """uvicorn's default parser took a 1 MB header and 10,000 header fields."""
    with serving(env) as (base, output):
        assert "Uvicorn running" in output, output
        with httpx.Client(base_url=base, timeout=30) as client:
            for headers in (
                {"X-Big": "a" * 1_000_000},
                {"X-Big": "a" * 40_000},
                {f"X-H{i}": "v" for i in range(10_000)},
                {f"X-H{i}": "v" for i in range(101)},
            ):
                r = client.get("/health", headers=headers)
                assert r.status_code == 431, r.text
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["status"] == 431
            # Ordinary requests, and ones near the limits, still work (on a new connection).
            assert client.get("/health").status_code == 200
            assert client.get("/health", headers={"X-Big": "a" * 20_000}).status_code == 200
            many = {f"X-H{i}": "v" for i in range(80)}
            assert client.get("/health", headers=many).status_code == 200


def test_scoring_apply_show_and_recompute(env, tmp_path):
    run(env, "workspace", "create", "default")
    csv = tmp_path / "people.csv"
    csv.write_text("email\na@example.com\nb@example.com\n")
    run(env, "contacts", "import", str(csv))
    model = tmp_path / "scoring.yaml"
    model.write_text(
        "scores:\n  signup:\n    decay: {percent: 10, per: 30 days}\n    rules:\n"
        "      - {id: joined, event: contact.created, points: 3}\n"
    )
    result = run(env, "scoring", "apply", str(model))
    assert "scoring model version 1: 2 contacts scored" in result.stdout
    shown = run(env, "scoring", "show").stdout
    assert "version 1, 2 contact scores" in shown and "event: contact.created" in shown
    assert "2 contacts scored" in run(env, "scoring", "recompute").stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("scores:\n  signup:\n    decay: {half_life: -3 days}\n")
    result = run(env, "scoring", "apply", str(bad), check=False)
    assert result.returncode == 1 and "scores.signup.decay.half_life" in result.stderr
