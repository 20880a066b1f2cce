"""The environment `conveyor` subprocesses run in: a database of each dialect, a temp data dir."""

from __future__ import annotations

import os

import pytest


@pytest.fixture
def env(database_url, tmp_path):
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
    }
