"""The sales side from the real `conveyor` CLI: pipelines as YAML, members, the scenario-7
automation that needs them, and errors that name the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_and_server import run

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_pipelines_members_and_a_crm_automation_from_files(env, tmp_path):
    run(env, "workspace", "create", "shop")
    applied = run(
        env, "pipeline", "apply", str(EXAMPLES / "pipelines" / "sales.yaml"), "-w", "shop"
    ).stdout
    assert "sales: created: Lead (10%) → Qualified (30%)" in applied
    again = run(env, "pipeline", "apply", str(EXAMPLES / "pipelines" / "sales.yaml"), "-w", "shop")
    assert "sales: unchanged" in again.stdout
    assert (
        "max@acme.example"
        in run(env, "member", "add", "Max", "max@acme.example", "-w", "shop").stdout
    )
    assert "Max" in run(env, "member", "list", "-w", "shop").stdout
    tell = str(EXAMPLES / "automations" / "tell-sales.yaml")
    assert "tell-sales: created" in run(env, "automation", "apply", tell, "-w", "shop").stdout
    assert "Won" in run(env, "pipeline", "board", "sales", "-w", "shop").stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("key: sales\nstages:\n  - {name: Lead, probability: 150}\n")
    failed = run(env, "pipeline", "apply", str(bad), "-w", "shop", check=False)
    assert failed.returncode == 1
    assert "stages.0.probability" in failed.stderr and str(bad) in failed.stderr
    failed = run(env, "deal", "move", "99", "Won", "-w", "shop", check=False)
    assert failed.returncode == 1 and "no deal 99" in failed.stderr
