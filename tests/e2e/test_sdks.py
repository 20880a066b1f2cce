"""The analytics SDKs people already have, installed from the registries, sending unchanged to a
live Conveyor: Segment's and RudderStack's Python SDKs, Segment's Node SDK and Segment's browser
SDK (analytics-next, in headless Chromium). Every call type arrives with its traits, properties
and a timestamp corrected for the sender's clock (the server's clock here is a simulated one,
eleven months away from the SDKs' clocks: an uncorrected timestamp would be far off)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conveyor.api.app import create_app
from tests.integration.conftest import LiveServer, make_tenant

pytestmark = pytest.mark.e2e
SDK_DIR = Path(__file__).parent.parent / "sdk"
CHROMIUM = shutil.which("chromium")
NPM = shutil.which("npm")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """`npm ci` of tests/sdk (the Node and browser SDKs, pinned by its package-lock.json)."""
    if NPM is None or shutil.which("node") is None:
        pytest.skip("Node.js and npm are not installed")
    modules = SDK_DIR / "node_modules"
    lock = SDK_DIR / "package-lock.json"
    marker = modules / ".package-lock.json"
    # One install at a time: test workers running in parallel would each start one.
    with open(SDK_DIR / ".npm-install.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
            subprocess.run(
                [NPM, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=SDK_DIR,
                check=True,
                timeout=300,
            )
    return modules


@contextmanager
def live(conveyor) -> Iterator[tuple[str, object, httpx.Client]]:
    tenant = make_tenant(conveyor, "acme")
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api,
    ):
        yield server.url, tenant, api


def contact(api: httpx.Client, external_id: str) -> dict:
    r = api.get("/contacts/lookup", params={"external_id": external_id})
    assert r.status_code == 200, r.text
    return r.json()


def events(api: httpx.Client, contact_id: int) -> dict[str, dict]:
    items = api.get(f"/contacts/{contact_id}/events", params={"limit": 100}).json()["items"]
    return {e["name"] if e["kind"] == "track" else e["kind"]: e for e in items}


def moment(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def check_every_call(api: httpx.Client, clock, user: str, *, past: timedelta) -> None:
    """What each SDK sent (the same calls, see the senders): every field where it belongs."""
    c = contact(api, user)
    assert (c["email"], c["first_name"], c["last_name"]) == (f"{user}@example.com", "Ada", "L")
    assert c["fields"]["plan"] == "pro"
    assert c["fields"]["company_name"] == "Acme"
    assert "anon-" + user in c["anonymous_ids"]
    seen = events(api, c["id"])
    assert seen["order_completed"]["properties"] == {"total": 99.5, "items": 2, "sku": ["a", "b"]}
    assert seen["page"]["properties"]["name"] == "Pricing"
    assert seen["page"]["properties"]["url"] == "https://acme.test/pricing"
    assert seen["screen"]["properties"]["name"] == "Home"
    assert seen["group"]["properties"] == {"group_id": "g-" + user, "traits": {"name": "Acme"}}
    assert seen["alias"]["properties"]["previous_id"] == "anon-" + user
    # The order happened `past` ago on the SDK's clock: it lands `past` before the server's now,
    # though the SDK's clock and the server's are eleven months apart.
    assert abs(moment(seen["order_completed"]) - (clock.now() - past)) < timedelta(seconds=30)
    # Calls without a timestamp of their own land at about the server's now.
    assert abs(moment(seen["page"]) - clock.now()) < timedelta(seconds=30)


def send_python(client, user: str, past: timedelta) -> None:
    """The same calls through either Python SDK (their APIs are the same shape)."""
    client.identify(
        user,
        {
            "email": f"{user}@example.com",
            "firstName": "Ada",
            "lastName": "L",
            "plan": "pro",
            "company": {"name": "Acme"},
        },
        anonymous_id="anon-" + user,
    )
    client.track(
        user,
        "order_completed",
        {"total": 99.5, "items": 2, "sku": ["a", "b"]},
        timestamp=datetime.now(UTC) - past,
    )
    client.page(user, "Docs", "Pricing", {"url": "https://acme.test/pricing"})
    client.screen(user, "App", "Home")
    client.group(user, "g-" + user, {"name": "Acme"})
    client.alias("anon-" + user, user)
    client.flush()


def test_segment_python_sdk(conveyor, clock):
    from segment.analytics.client import Client

    errors: list[object] = []
    with live(conveyor) as (url, tenant, api):
        client = Client(
            tenant.write_key, host=url, sync_mode=True, on_error=lambda e, b: errors.append(e)
        )
        send_python(client, "seg-py", timedelta(days=2))
        assert errors == []
        check_every_call(api, clock, "seg-py", past=timedelta(days=2))


def test_rudderstack_python_sdk(conveyor, clock):
    """RudderStack gzips its batches and sends an identify's traits only in context.traits."""
    from rudderstack.analytics.client import Client

    errors: list[object] = []
    with live(conveyor) as (url, tenant, api):
        client = Client(
            tenant.write_key, host=url, sync_mode=True, on_error=lambda e, b: errors.append(e)
        )
        assert client.gzip is True
        send_python(client, "rs-py", timedelta(hours=5))
        assert errors == []
        check_every_call(api, clock, "rs-py", past=timedelta(hours=5))


NODE_SENDER = """
const { Analytics } = require('@segment/analytics-node')
const analytics = new Analytics({ writeKey: process.env.KEY, host: process.env.URL, flushAt: 3 })
analytics.on('error', (e) => { console.error(e); process.exitCode = 1 })
const user = 'seg-node'
analytics.identify({ userId: user, anonymousId: 'anon-' + user, traits: {
  email: user + '@example.com', firstName: 'Ada', lastName: 'L', plan: 'pro',
  company: { name: 'Acme' } } })
analytics.track({ userId: user, event: 'order_completed',
  properties: { total: 99.5, items: 2, sku: ['a', 'b'] },
  timestamp: new Date(Date.now() - 3 * 3600 * 1000) })
analytics.page({ userId: user, category: 'Docs', name: 'Pricing',
  properties: { url: 'https://acme.test/pricing' } })
analytics.screen({ userId: user, name: 'Home' })
analytics.group({ userId: user, groupId: 'g-' + user, traits: { name: 'Acme' } })
analytics.alias({ userId: user, previousId: 'anon-' + user })
analytics.closeAndFlush().then(() => console.log('flushed'))
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_segment_node_sdk(conveyor, clock, node_modules):
    with live(conveyor) as (url, tenant, api):
        done = subprocess.run(
            ["node", "-e", NODE_SENDER],
            cwd=SDK_DIR,
            env={**os.environ, "KEY": tenant.write_key, "URL": url},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and "flushed" in done.stdout, done.stderr
        check_every_call(api, clock, "seg-node", past=timedelta(hours=3))


BROWSER_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme pricing</title></head>
<body><h1>Pricing</h1>
<script src="/ajs/index.js"></script>
<script>
  // The only setting: Conveyor stands where Segment's CDN would (it answers the settings).
  window.analytics = AnalyticsNext.AnalyticsBrowser.load(
    { writeKey: KEY, cdnURL: CONVEYOR }, { disableClientPersistence: true }
  );
</script></body></html>"""


@contextmanager
def customer_site(conveyor_url: str, key: str, umd: Path) -> Iterator[str]:
    """The customer's website, on its own origin, serving analytics-next's browser bundle."""
    page = BROWSER_PAGE.replace("KEY", json.dumps(key)).replace(
        "CONVEYOR", json.dumps(conveyor_url)
    )

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(umd), **kwargs)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.startswith("/ajs/"):
                self.path = self.path.removeprefix("/ajs")
                super().do_GET()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(page.encode())

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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_segment_browser_sdk_in_chromium(conveyor, clock, node_modules):
    """analytics-next posts each call to the type's letter (/v1/i, /v1/t, /v1/p, /v1/g, /v1/a).
    The visitor's clock runs four hours slow: the calls still land at the server's now."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_site_snippet import CHROMIUM_ARGS, eventually

    umd = node_modules / "@segment" / "analytics-next" / "dist" / "umd"
    with (
        live(conveyor) as (url, tenant, api),
        customer_site(url, tenant.write_key, umd) as site,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.clock.install(time=datetime.now(UTC) - timedelta(hours=4))
            page.goto(site)
            user = "seg-web"
            page.evaluate(
                """async (user) => {
                  await analytics.identify(user, {email: user + '@example.com', firstName: 'Ada',
                    lastName: 'L', plan: 'pro', company: {name: 'Acme'}})
                  await analytics.track('order_completed', {total: 99.5, items: 2,
                    sku: ['a', 'b']})
                  await analytics.page('Docs', 'Pricing', {url: 'https://acme.test/pricing'})
                  await analytics.group('g-' + user, {name: 'Acme'})
                  await analytics.alias(user, 'anon-' + user)
                }""",
                user,
            )

            def arrived() -> dict | None:
                found = api.get("/contacts/lookup", params={"external_id": user})
                if found.status_code != 200:
                    return None
                seen = events(api, found.json()["id"])
                return seen if {"order_completed", "page", "group", "alias"} <= set(seen) else None

            seen = eventually(arrived, "the browser SDK's calls", timeout=20)
        finally:
            browser.close()
        c = contact(api, user)
        assert (c["email"], c["first_name"], c["fields"]["plan"]) == (
            f"{user}@example.com",
            "Ada",
            "pro",
        )
        assert c["fields"]["company_name"] == "Acme"
        assert seen["order_completed"]["properties"] == {
            "total": 99.5,
            "items": 2,
            "sku": ["a", "b"],
        }
        assert seen["page"]["properties"]["name"] == "Pricing"
        assert seen["page"]["properties"]["url"] == "https://acme.test/pricing"
        assert seen["group"]["properties"] == {"group_id": "g-" + user, "traits": {"name": "Acme"}}
        assert seen["order_completed"]["context"]["library"]["name"] == "analytics.js"
        for name in ("order_completed", "page", "identify"):
            assert abs(moment(seen[name]) - clock.now()) < timedelta(seconds=30), name
