"""The API reference works without internet: /docs (Swagger UI) and /redoc load their script
and styles from this server, in headless Chromium with every other host blocked."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import Route, expect, sync_playwright

from conveyor.api.app import create_app
from tests.e2e.test_panel_browser import ARGS
from tests.integration.conftest import LiveServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed"),
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_docs_and_redoc_load_with_other_hosts_blocked(conveyor):
    with LiveServer(create_app(conveyor)) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            page = browser.new_page()
            elsewhere: list[str] = []

            def only_here(route: Route) -> None:
                if route.request.url.startswith(server.url):
                    route.continue_()
                else:
                    elsewhere.append(route.request.url)
                    route.abort()

            page.route("**/*", only_here)
            page.goto(f"{server.url}/docs")
            expect(page.locator(".opblock-summary-path", has_text="/contacts").first).to_be_visible(
                timeout=15000
            )
            assert page.locator(".opblock").count() > 50
            expect(page.locator(".information-container .title")).to_contain_text("Conveyor")
            assert elsewhere == [], elsewhere  # Swagger UI: nothing from another host
            page.goto(f"{server.url}/redoc")
            # ReDoc renders the whole spec before showing anything: slow on a busy 2-core machine
            expect(page.get_by_text("Conveyor", exact=False).first).to_be_visible(timeout=60000)
            expect(page.locator("[data-section-id]").first).to_be_attached(timeout=15000)
            # ReDoc's "API docs by Redocly" footer links its logo from a CDN: only a missing
            # image, the reference is complete without it. Nothing else left this server.
            assert [u for u in elsewhere if "cdn.redoc.ly" not in u] == [], elsewhere
        finally:
            browser.close()
