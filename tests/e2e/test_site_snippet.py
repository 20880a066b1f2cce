"""The website snippet in headless Chromium: a customer's page (on its own origin) loads
/sdk/conveyor.js with a write key, identifies a user, gets a site message from an automation,
shows it, and reports the click back to Conveyor."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from conveyor.api.app import create_app
from tests.integration.conftest import LiveServer, make_tenant

pytestmark = pytest.mark.e2e
CHROMIUM = shutil.which("chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme app</title></head>
<body style="font-family:system-ui;margin:2rem;background:#f4f5f7">
<h1>Acme app</h1><p>Your dashboard.</p>
<script src="{conveyor}/sdk/conveyor.js" data-key="{key}" async></script>
</body></html>"""


@contextmanager
def customer_site(conveyor_url: str, key: str) -> Iterator[str]:
    """The customer's website: another origin than Conveyor, as in real life."""
    pages = {
        "/": PAGE.format(conveyor=conveyor_url, key=key),
        "/invite": "<!doctype html><title>Invite</title><h1>Invite your team</h1>",
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path.partition("?")[0])
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write((body or "not found").encode())

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)  # stops fast
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def eventually(check: Callable[[], object], what: str, timeout: float = 10) -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def settle(conveyor) -> None:
    conveyor.engine.run_until_idle()
    conveyor.delivery.run_until_idle()


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_snippet_identifies_shows_the_site_message_and_reports_the_click(conveyor):
    tenant = make_tenant(conveyor, "acme")
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api,
        customer_site(server.url, tenant.write_key) as site,
        sync_playwright() as playwright,
    ):

        def events(name: str) -> list[dict]:
            found = api.get("/contacts/lookup", params={"external_id": "u-42"})
            if found.status_code == 404:
                return []
            cid = found.json()["id"]
            return api.get(f"/contacts/{cid}/events", params={"name": name}).json()["items"]

        r = api.post(
            "/templates",
            json={
                "key": "invite-team",
                "channel": "site_message",
                "content": {
                    "title": "Welcome, {{ contact.first_name }}!",
                    "body": "Your trial has started. <b>Tip:</b> invite your team.",
                    "button": "Invite your team",
                    "url": f"{site}/invite",
                },
            },
        )
        assert r.status_code == 200, r.text
        r = api.post(
            "/automations",
            json={
                "key": "trial-invite",
                "triggers": [{"event": "trial_started"}],
                "nodes": [{"id": "invite", "type": "send_site_message", "template": "invite-team"}],
            },
        )
        assert r.status_code == 200, r.text
        r = api.patch("/automations/trial-invite", json={"status": "active"})
        assert r.status_code == 200, r.text

        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 520})
            page.goto(f"{site}/")
            page.wait_for_function("window.conveyor && window.conveyor.version")
            page.evaluate("conveyor.identify('u-42', {firstName: 'Ada', email: 'ada@example.com'})")
            # The page call sent on load was the anonymous visitor's; identify made it Ada's.
            pages = eventually(lambda: events("page"), "the page event")
            assert pages[0]["properties"]["path"] == "/"
            assert pages[0]["properties"]["title"] == "Acme app"
            page.evaluate("window.samePage = true")
            page.evaluate("conveyor.track('trial_started', {plan: 'pro'})")
            eventually(lambda: events("trial_started"), "the track event")
            assert page.locator("[data-conveyor-message]").count() == 0

            # In a thread: Playwright's sync API keeps an event loop running in this one.
            # The engine makes the message after the call was answered; the snippet looks
            # again shortly after each call, so it shows in the same page, with no reload.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(settle, conveyor).result()

            banner = page.get_by_role("dialog", name="Welcome, Ada!")
            expect(banner).to_be_visible(timeout=10_000)
            assert page.evaluate("window.samePage") is True
            # The body is text: markup in it is shown, not interpreted.
            expect(banner).to_contain_text("<b>Tip:</b> invite your team.")
            expect(banner.get_by_role("button", name="Close")).to_be_visible()
            page.screenshot(path="/tmp/site_message.png")
            eventually(lambda: events("site_message.shown"), "site_message.shown")

            banner.get_by_role("link", name="Invite your team").click()
            page.wait_for_url(f"{site}/invite")
            clicked = eventually(lambda: events("site_message.clicked"), "site_message.clicked")
            assert clicked[0]["properties"]["automation"] == "trial-invite"
            r = api.get("/v1/site-messages", params={"userId": "u-42"})
            assert r.json() == {"items": []}
        finally:
            browser.close()
