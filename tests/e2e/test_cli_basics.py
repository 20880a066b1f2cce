"""What a new user meets first at the command line (issue 19): `--version`, and one clear line,
not a 492-line traceback, when the database cannot be reached."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor import __version__

CONVEYOR = str(Path(sys.executable).with_name("conveyor"))


def test_version():
    done = subprocess.run([CONVEYOR, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"conveyor {__version__}"


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
    done = subprocess.run([CONVEYOR, *command], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot use the database"), done.stderr
    assert said in lines[0] and "secret-pw" not in lines[0]
    assert "Traceback" not in done.stderr + done.stdout
