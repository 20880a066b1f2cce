"""The suite's secret guard (tests/support/secret_guard.py) fails a run that logs a key it made,
names the leak without printing the key, and passes one that logs none: run by real pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFTEST = """
from tests.support import secret_guard

def pytest_configure(config):
    secret_guard.install(config)
"""

TEST = """
import logging
from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from conveyor.store import migrate
from conveyor.store.database import make_engine

log = logging.getLogger("conveyor.api")


def make_key(tmp_path):
    url = f"sqlite:///{tmp_path}/conveyor.db"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    app = bootstrap(Settings(database_url=url, data_dir=tmp_path))
    try:
        return app.workspaces.create("shop")[1]
    finally:
        app.close()


def test_makes_a_key(tmp_path):
    key = make_key(tmp_path)
    log.info("made key %s", key.id)
    LEAK
"""


def run_pytest(tmp_path: Path, leak: str, *options: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_generated.py").write_text(TEST.replace("LEAK", leak))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *options, "."],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# The key without its `cvk_` prefix: the formatter's last-defence mask does not catch it.
LEAKY = 'log.warning("retrying with %s", key.secret.removeprefix("cvk_"))'


@pytest.mark.parametrize("options", [(), ("-p", "xdist", "-n", "2")], ids=["serial", "xdist"])
def test_a_run_that_logs_a_key_it_made_fails_naming_the_leak(tmp_path, options) -> None:
    result = run_pytest(tmp_path, LEAKY, *options)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed" in output  # the test itself passed: the guard failed the run
    assert "SECRET LEAKED (API key) in test_generated.py::test_makes_a_key" in output
    assert "retrying with <API key: " in output
    shown = output.split("secrets in log lines", 1)[1]
    assert "cvk_" not in shown.replace("cvk_[redacted]", "")


# A key a `conveyor` command printed (run as the e2e tests run commands, tests/support/cli.py),
# logged by the test process without its prefix.
PRINTED = """from tests.support import cli
    env = {"CONVEYOR_DATABASE_URL": f"sqlite:///{tmp_path}/conveyor.db", "PATH": ""}
    made = cli.run(["key", "create", "-w", "shop", "--kind", "write", "--name", "x"], env=env)
    log.warning("retrying with %s", made.stdout.strip().removeprefix("cvk_"))"""



# The secrets derived per automation and per provider: an automation's inbound webhook token and
# the secret path of the SMS providers' inbound URLs.
DERIVED = """from conveyor.services.automations import hook_token
    from conveyor.services.channel_config import inbound_token
    app = bootstrap(Settings(database_url=f"sqlite:///{tmp_path}/conveyor.db", data_dir=tmp_path))
    ws = app.workspaces.get("shop")
    app.automations.apply(ws, {"key": "hooked", "triggers": [{"event": "go"}],
                               "nodes": [{"id": "t", "type": "add_tag", "tag": "a"}]})
    app.close()
    log.warning("hook %s", hook_token(ws, "hooked"))
    log.warning("inbound %s", inbound_token(ws, "sms"))"""


@pytest.mark.parametrize(
    ("leak", "kinds"),
    [(PRINTED, ["API key"]), (DERIVED, ["automation webhook token", "inbound webhook token"])],
    ids=["printed-by-a-command", "derived-tokens"],
)
def test_secrets_made_elsewhere_are_caught_too(tmp_path, leak, kinds) -> None:
    result = run_pytest(tmp_path, leak)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed" in output  # the test itself passed: the guard failed the run
    for kind in kinds:
        assert f"SECRET LEAKED ({kind}) in test_generated.py::test_makes_a_key" in output


def test_a_run_that_logs_no_secret_passes(tmp_path) -> None:
    result = run_pytest(tmp_path, 'log.warning("retrying with key %s", key.id)')
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "1 passed" in output and "SECRET LEAKED" not in output
