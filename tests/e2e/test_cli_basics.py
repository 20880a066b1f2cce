"""What a new user meets first at the command line (issue 19): `--version`, one clear line, not a
492-line traceback, when the database cannot be reached, and commands that start without
importing what they do not use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import __version__
from conveyor.cli.main import WorkerRole
from conveyor.worker.loop import Role
from tests.support import cli

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def test_version():
    done = subprocess.run([CONVEYOR, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"conveyor {__version__}"


def test_version_and_help_import_no_part_of_conveyor_beyond_the_cli():
    """`--version` took 1.2 s: the CLI imported all of Conveyor (services, store, SQLAlchemy)."""
    names = ["conveyor.bootstrap", "conveyor.settings", "conveyor.store", "sqlalchemy"]
    for args in (["--version"], ["--help"], ["worker", "--help"]):
        script = LOADED.format(names=names)
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stderr.strip().splitlines()[-1] == "[]", (args, done.stderr)


def test_the_worker_roles_the_cli_offers_are_the_workers():
    assert [r.value for r in WorkerRole] == [r.value for r in Role]


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql+psycopg://someone:secret-pw@127.0.0.1:1/nowhere", "Connection refused"),
        ("not a database url", "unreadable CONVEYOR_DATABASE_URL"),
    ],
)
@pytest.mark.parametrize("command", [["workspace", "list"], ["serve", "--port", "1"]])
def test_an_unreachable_database_is_one_clear_line(url, said, command, tmp_path):
    env = {**os.environ, "CONVEYOR_DATABASE_URL": url, "CONVEYOR_DATA_DIR": str(tmp_path)}
    done = cli.run(command, env=env, timeout=60)  # a process forked with the imports done
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use the database"), done.stderr
    assert said in lines[0] and "secret-pw" not in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


# Imported only by the code that uses them: each cost every command (and every test that runs
# one) 0.05-0.25 s of CPU. Alembic runs when the schema is not at head; Liquid, Inscriptis and
# lxml when an email is rendered; httpx (with h11, and Pygments through its own CLI) when a
# webhook or SMS is sent; the web stack when serving.
NOT_FOR_A_COMMAND = [
    "alembic", "liquid", "inscriptis", "lxml", "httpx", "h11", "pygments", "phonenumbers",
    "rich.progress", "fastapi", "uvicorn", "jinja2",
]  # fmt: skip
LOADED = """
import sys
from conveyor.cli.main import main
sys.argv = ["conveyor", *sys.argv[1:]]
try:
    main()
except SystemExit as done:
    if done.code:
        raise
finally:
    print(sorted(name for name in {names!r} if name in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["workspace", "list"], ["segment", "list"]])
def test_a_command_imports_only_what_it_uses(env, command):
    assert cli.run(["workspace", "create", "default"], env=env).returncode == 0
    script = LOADED.format(names=NOT_FOR_A_COMMAND)
    done = subprocess.run(
        [sys.executable, "-c", script, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[]", done.stderr
