"""The environment `conveyor` subprocesses run in: a database of each dialect, a temp data dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from conveyor.bootstrap import Conveyor

# Playwright's assertions wait 5 s by default. The first preview a page asks for (MJML rendered
# on the server) took longer on a 2-core machine running both xdist workers: twice on 2 December,
# in test_panel_templates_browser.py. A longer wait asserts the same, only more patiently.
expect.set_options(timeout=20_000)

# Chromium 156 runs a sandboxed iframe (the template preview's) in a process of its own, and
# Playwright then loses track of that frame now and then under load: the frame is missing from
# page.frames and a locator into it waits in vain (2 of 26 runs of the template editor test with a
# busy core beside it; 0 of 14 with the feature off, as Puppeteer turns it off for its own tests).
# The sandbox itself (no scripts, an opaque origin) applies either way and is asserted.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-sync",
    "--disable-features=IsolateSandboxedIframes",
]


@pytest.fixture
def env(database_url, tmp_path):
    return {
        **os.environ,
        "CONVEYOR_DATABASE_URL": database_url,
        "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
    }


@pytest.fixture(scope="module")
def shared_chromium() -> Iterator[Browser]:
    """Headless Chromium for a file's tests: starting Playwright's driver and the browser, and
    stopping them, took ~2 s a test (more with both xdist workers busy). While the sync API is
    open its loop counts as running in this thread, so nothing in these files may run an event
    loop in it: the `conveyor` fixture below closes its Delivery (which does) in a thread."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def chromium(shared_chromium: Browser) -> Iterator[Browser]:
    """The file's Chromium; the pages (and contexts) a test opened are closed after it, so no
    page of one test keeps polling, or holding cookies, into the next."""
    yield shared_chromium
    for context in shared_chromium.contexts:
        context.close()


@pytest.fixture
def conveyor(conveyor: Conveyor) -> Iterator[Conveyor]:
    """The shared fixture's Conveyor, closed in a thread: Delivery.close() runs its event loop,
    which cannot run in this thread while a file's Chromium is open (see shared_chromium)."""
    close = conveyor.close
    conveyor.close = lambda: None  # type: ignore[method-assign]  # (the shared fixture's call)
    yield conveyor
    with ThreadPoolExecutor(1) as pool:
        pool.submit(close).result()


@pytest.fixture
def browser(chromium: Browser) -> Browser:
    return chromium
