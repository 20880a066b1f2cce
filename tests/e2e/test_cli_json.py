"""`--json` on every command: one JSON document on standard output (tables as records), errors
as `{"error": …}` on standard error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import cli

pytestmark = pytest.mark.e2e


def run(env, *args):
    done = cli.run(args, env=env, timeout=120)  # a process forked with the imports done
    return done, (json.loads(done.stdout) if done.stdout.strip() else None)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_json_anywhere_on_the_command_line(env):
    done, created = run(env, "workspace", "create", "shop", "--json")
    assert done.returncode == 0 and created["workspace"] == "shop"
    assert created["admin_key"].startswith("cvk_")
    done, key = run(env, "--json", "key", "create", "-w", "shop", "--kind", "write")
    assert (key["kind"], key["workspace"]) == ("write", "shop") and key["key"].startswith("cvk_")
    done, keys = run(env, "key", "list", "-w", "shop", "--json")
    assert [(k["id"], k["kind"]) for k in keys] == [("1", "admin"), (str(key["id"]), "write")]
    examples = str(Path(__file__).parent.parent.parent / "examples")
    done, plan = run(env, "apply", examples, "-w", "shop", "--json")
    assert plan["applied"] and plan["counts"]["error"] == 0
    done, automations = run(env, "automation", "list", "-w", "shop", "--json")
    assert {
        "key": "welcome-series",
        "name": "Welcome series",
        "status": "draft",
        "version": "1",
    } in automations
    done, segments = run(env, "segment", "list", "-w", "shop", "--json")
    assert {s["key"] for s in segments} == {"good-customers", "inactive", "de-repeat-buyers"}
    done, nothing = run(env, "key", "revoke", "99", "-w", "shop", "--json")
    assert done.returncode == 1 and nothing is None
    assert json.loads(done.stderr) == {"error": "no key 99 in this workspace"}
