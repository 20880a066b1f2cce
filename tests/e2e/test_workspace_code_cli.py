"""`conveyor validate|plan|apply DIR` as a user runs them: offline with no database at all, on
the local database, and against a server (`--url`/`--key`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conveyor.api.app import create_app
from conveyor.cli.code import read_folder
from tests.integration.conftest import LiveServer, make_tenant
from tests.support import cli

EXAMPLES = str(Path(__file__).parent.parent.parent / "examples")
pytestmark = pytest.mark.e2e
N = len(read_folder(Path(EXAMPLES)))  # resources in examples/


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return cli.run(args, env=env, timeout=120)  # a process forked with the imports done


def test_validate_needs_no_database_and_catches_a_missing_template(tmp_path):
    # A database that cannot be reached: validate never asks for it.
    env = {
        **os.environ,
        "CONVEYOR_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/nowhere",
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
    }
    done = run("validate", EXAMPLES, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"examples: valid ({N} resources)" in done.stdout
    assert not (tmp_path / "data").exists()

    folder = tmp_path / "setup"
    shutil.copytree(EXAMPLES, folder)
    file = folder / "automations" / "open-or-remind.yaml"
    definition = yaml.safe_load(file.read_text())
    definition["nodes"][0]["template"] = "ofer"  # a typo
    file.write_text(yaml.safe_dump(definition))
    done = run("validate", str(folder), "--json", env=env)
    assert done.returncode == 1
    plan = json.loads(done.stdout)
    assert plan["counts"]["error"] == 1 and not plan["applied"]
    [error] = [c for c in plan["changes"] if c["action"] == "error"]
    assert (error["source"], error["field"]) == (
        "automations/open-or-remind.yaml",
        "nodes.0.template",
    )
    assert error["error"] == "no email template 'ofer' in the folder or the workspace"

    (folder / "segments" / "inactive.yaml").write_text("key: inactive\ncondition: [oops\n")
    done = run("validate", str(folder), env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("error: segments/inactive.yaml:3:1:"), done.stderr


def test_plan_apply_plan_on_the_local_database(env):
    done = run("plan", EXAMPLES, env=env)
    assert done.returncode == 1 and "no workspace named 'default'" in done.stderr, done.stderr
    assert run("workspace", "create", "default", env=env).returncode == 0
    done = run("plan", EXAMPLES, env=env)
    assert done.returncode == 0, done.stderr
    assert f"Plan: {N} to create, 0 to update, 0 to delete, 0 unchanged." in done.stdout
    done = run("apply", EXAMPLES, env=env)
    assert done.returncode == 0, done.stderr
    assert f"Applied: {N} to create" in done.stdout
    done = run("plan", EXAMPLES, "--json", env=env)
    assert json.loads(done.stdout)["counts"] == {
        "create": 0,
        "update": 0,
        "delete": 0,
        "unchanged": N,
        "error": 0,
    }


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_plan_and_apply_against_a_server(conveyor, tmp_path):
    tenant = make_tenant(conveyor, "acme")
    env = {**os.environ, "CONVEYOR_DATA_DIR": str(tmp_path / "data")}
    with LiveServer(create_app(conveyor)) as server:
        done = run("plan", EXAMPLES, "--url", server.url, "--key", tenant.admin_key, env=env)
        assert done.returncode == 0, done.stderr
        assert f"Plan: {N} to create" in done.stdout
        done = run(
            "apply",
            EXAMPLES,
            "--url",
            server.url,
            "--json",
            env={**env, "CONVEYOR_KEY": tenant.admin_key},
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["applied"] is True
    assert len(conveyor.automations.all(tenant.workspace)) == len(
        [r for r in read_folder(Path(EXAMPLES)) if r.kind == "automation"]
    )
    assert not (tmp_path / "data").exists()  # nothing local was opened
