"""`conveyor automation simulate|try|forecast` as a user runs them, on a workspace seeded with a
few days of shop history (benchmarks/seed_history.py, the README's walkthrough)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_and_server import run

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
CART = str(ROOT / "examples" / "automations" / "abandoned-cart.yaml")


def test_simulate_try_and_forecast_on_a_seeded_workspace(env, tmp_path):
    seeded = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "seed_history.py"),
            "--contacts",
            "40",
            "--days",
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert seeded.returncode == 0, seeded.stderr
    env = {**env, "COLUMNS": "160"}
    shown = run(env, "automation", "simulate", CART, "--from", "4d", "--contact", "1").stdout
    assert "abandoned-cart:" in shown and "Per day" in shown and "Per node" in shown
    assert "Nothing was written or sent" in shown and "Messages sent per contact" in shown
    report = json.loads(run(env, "automation", "simulate", CART, "--from", "4d", "--json").stdout)
    cart = report["automations"]["abandoned-cart"]
    assert cart["entries"] > 0 and sum(report["messages_per_contact"].values()) == 40
    # Two versions side by side: a longer first wait changes what the reminders do.
    slower = tmp_path / "slower.yaml"
    slower.write_text(Path(CART).read_text().replace("timeout: 1 hour", "timeout: 6 hours"))
    both = run(env, "automation", "simulate", CART, "--from", "4d", "--compare", str(slower))
    assert "two versions on the same history" in both.stdout and "slower.yaml" in both.stdout
    walked = run(
        env,
        "automation",
        "try",
        CART,
        "--contact",
        "1",
        "--event",
        "cart_updated",
        "--event",
        "order_completed@30 minutes",
        "--days",
        "2",
    ).stdout
    assert "goal_reached" in walked and "reminder" not in walked
    made_up = run(
        env,
        "automation",
        "try",
        CART,
        "--as",
        '{"email": "new@example.com"}',
        "--event",
        "cart_updated",
        "--days",
        "2",
    ).stdout
    assert "second-reminder" in made_up and "Contact -1" in made_up
    forecast = run(env, "automation", "forecast", "--days", "4").stdout
    assert "thanks-offer" in forecast and "Messages per contact per week" in forecast
    bad = run(env, "automation", "simulate", CART, "--from", "soon", check=False)
    assert bad.returncode == 1 and "--from" in bad.stderr
