"""Reports from the real `conveyor` CLI: tables for an automation and the overview, the
attribution model shown and changed, and one clear line for a bad option."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_cli_and_server import run

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_report_commands(env):
    env = {**env, "COLUMNS": "220"}  # a wide terminal: the tables have many columns
    run(env, "workspace", "create", "shop")
    cart = str(EXAMPLES / "automations" / "abandoned-cart.yaml")
    run(env, "template", "apply", str(EXAMPLES / "templates" / "scenarios.yaml"), "-w", "shop")
    run(env, "automation", "apply", cart, "-w", "shop")
    shown = run(env, "report", "automation", "abandoned-cart", "-w", "shop", "--by", "week",
                "--from", "2026-11-01", "--to", "2026-11-30").stdout
    assert "2026-11-01 → 2026-11-30 (UTC), by week" in shown
    assert "last click within 5 days" in shown
    assert "wait-for-order (wait_until)" in shown and "second-reminder (send_email)" in shown
    overview = run(env, "report", "overview", "-w", "shop").stdout
    assert "Conversions 0 (0.00), of which attributed to messages 0" in overview
    changed = run(env, "report", "attribution", "-w", "shop", "--event", "purchase",
                  "--click-days", "7", "--revenue-property", "value").stdout
    assert "last click within 7 days" in changed and "purchase" in changed and "value" in changed
    assert "purchase" in run(env, "report", "attribution", "-w", "shop").stdout
    bad = run(env, "report", "overview", "-w", "shop", "--by", "hour", check=False)
    assert bad.returncode == 1 and "granularity: one of day, week, month" in bad.stderr
    bad = run(env, "report", "attribution", "-w", "shop", "--open-days", "400", check=False)
    assert bad.returncode == 1 and "attribution.open_days" in bad.stderr
    bad = run(env, "report", "automation", "nope", "-w", "shop", check=False)
    assert bad.returncode == 1 and "no automation 'nope'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
