"""The environment `conveyor` subprocesses run in: a database of each dialect, a temp data dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

# Playwright's assertions wait 5 s by default. The first preview a page asks for (MJML rendered
# on the server) took longer on a 2-core machine running both xdist workers: twice on 2 December,
# in test_panel_templates_browser.py. A longer wait asserts the same, only more patiently.
expect.set_options(timeout=20_000)

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]


@pytest.fixture
def env(database_url, tmp_path):
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture
def chromium() -> Iterator[Browser]:
    """Headless Chromium for one test. Not shared by a file's tests: while Playwright's sync API
    is open its loop counts as running in this thread, and the next test's fixtures (delivery's
    event loop) could not run theirs."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def browser(chromium: Browser) -> Browser:
    return chromium
