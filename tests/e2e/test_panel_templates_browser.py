"""The template editor and "Test a contact" in headless Chromium against the real app on SQLite
(PostgreSQL: see test_panel_browser.BROWSER): a marketer edits a template and watches the preview
follow, meets an error at its line (the editor's line marked, the place selected by a button),
saves, reads the difference, sends a test that arrives at a real SMTP server; then walks a contact
through scenario 4 (the abandoned cart). axe-core on every page, the keyboard throughout.
Screenshots go to /tmp/tpledit-shots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from playwright.sync_api import Page, expect

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor
from tests.e2e import test_panel_browser as frame
from tests.e2e.test_panel_browser import BROWSER_ON_SQLITE, PASSWORD, ROOT
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.support.smtp import SmtpSink

pytestmark = BROWSER_ON_SQLITE

SHOTS = Path("/tmp/tpledit-shots")
GREETING = {
    "subject": "Hello {{ contact.first_name | default: 'friend' }}",
    "html": (
        '<html><body style="font-family:Georgia,serif">\n'
        '<h1 style="color:#3b4bc8">Hi {{ contact.first_name }}!</h1>\n'
        "<p>Your cart is waiting.</p>\n"
        '<script>document.body.dataset.ran = "yes"</script>\n'
        "</body></html>"
    ),
}


def look(page: Page, name: str) -> None:
    frame.SHOTS = SHOTS
    frame.check_accessibility(page, name)


@pytest.fixture
def acme(conveyor: Conveyor) -> Iterator[tuple[Tenant, SmtpSink]]:
    tenant = make_tenant(conveyor, "acme")
    ws = tenant.workspace
    conveyor.signin.create_user(ws, "mia@acme.example", "marketer", PASSWORD, name="Mia Marketer")
    conveyor.templates.save(ws, "greeting", "email", GREETING, "Cart greeting")
    for template in yaml.safe_load(
        (ROOT / "examples" / "templates" / "scenarios.yaml").read_text()
    ):
        conveyor.templates.save(ws, template["key"], template["channel"], template["content"])
    cart = yaml.safe_load((ROOT / "examples" / "automations" / "abandoned-cart.yaml").read_text())
    conveyor.automations.apply(ws, cart)
    conveyor.automations.set_status(ws, "abandoned-cart", "active")
    sink = SmtpSink().start()
    conveyor.channels.configure(
        ws, "email", {"from": "Acme <news@acme.example>", "smtp_url": sink.url}
    )
    other = make_tenant(conveyor, "globex")
    conveyor.templates.save(other.workspace, "secret", "email", GREETING, "Globex secret")
    try:
        yield tenant, sink
    finally:
        sink.stop()


def test_edit_preview_error_save_diff_and_test_send(conveyor, acme, chromium, database_url):
    tenant, sink = acme
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api,
    ):
        made = api.post("/contacts", json={"email": "ada@example.com", "first_name": "Ada"})
        assert made.status_code == 201
        page = chromium.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=True)
        script_errors: list[str] = []
        page.on("pageerror", lambda error: script_errors.append(str(error)))
        fetched: set[str] = set()  # the paths the editor's script asks for
        page.on(
            "request",
            lambda r: fetched.add(urlsplit(r.url).path) if r.resource_type == "fetch" else None,
        )
        frame.sign_in(page, server.url, "mia@acme.example")

        page.get_by_role("link", name="Templates").click()
        page.wait_for_url("**/app/templates")
        expect(page.get_by_role("row", name="Cart greeting")).to_contain_text("email")
        expect(page.get_by_text("Globex secret")).to_have_count(0)
        look(page, f"{db}-templates")

        frame.tab_to(page, "Cart greeting")  # the keyboard opens it
        page.keyboard.press("Enter")
        page.wait_for_url("**/app/templates/greeting")
        preview = page.frame_locator("#preview-frame")
        expect(preview.get_by_role("heading", name="Hi !")).to_be_visible()

        # a contact chosen: the preview, the subject and the text part follow
        page.get_by_label("For the contact").fill("ada@example.com")
        expect(preview.get_by_role("heading", name="Hi Ada!")).to_be_visible()
        expect(page.locator("#pv-subject")).to_have_text("Hello Ada")
        expect(page.locator("#contact-status")).to_contain_text("ada@example.com")
        # the email's script did not run in the frame (sandboxed, no script allowed)
        assert page.frame("preview-frame").evaluate("document.body.dataset.ran") is None

        body = page.get_by_label("Body", exact=True)
        body.fill(GREETING["html"].replace("Hi {{", "Welcome back {{"))
        expect(preview.get_by_role("heading", name="Welcome back Ada!")).to_be_visible()
        expect(page.locator("#pv-text")).to_contain_text("Welcome back Ada!")
        page.get_by_label("Mobile (375 px)").check()
        # the width is animated: wait for it to settle at the phone's width
        expect(page.locator("#preview-frame")).to_have_css("width", "375px")
        look(page, f"{db}-editor")

        # an error: shown at its line and column, the line marked, the place one key away
        broken = GREETING["html"].replace(
            "Hi {{ contact.first_name }}", "Hi {{ contact.first_name | shout }}"
        )
        body.fill(broken)
        column = broken.splitlines()[1].index("shout") + 1
        error = page.locator("#err-body")
        expect(error).to_contain_text(f"line 2, column {column}: unknown filter 'shout'")
        expect(page.locator(".code .gutter span.bad")).to_have_text("2")
        expect(body).to_have_attribute("aria-invalid", "true")
        look(page, f"{db}-editor-error")
        error.get_by_role("button", name=f"line 2, column {column}").focus()
        page.keyboard.press("Enter")
        expect(body).to_be_focused()
        start = page.evaluate("document.getElementById('f-body').selectionStart")
        assert broken[start:].startswith("shout")
        # Save refuses it and stores nothing
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("alert").first).to_contain_text("Nothing was stored")
        assert conveyor.templates.get(tenant.workspace, "greeting").version == 1

        page.get_by_label("Body", exact=True).fill(
            GREETING["html"].replace("Hi {{", "Welcome back {{")
        )
        expect(page.locator("#err-body")).to_be_hidden()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status").first).to_contain_text("Saved as version 2.")
        assert conveyor.templates.get(tenant.workspace, "greeting").version == 2

        page.get_by_role("link", name="versions and changes").click()
        diff = page.get_by_label("Differences between version 1 and 2")
        expect(diff.locator(".removed")).to_contain_text("Hi {{ contact.first_name }}!")
        expect(diff.locator(".added")).to_contain_text("Welcome back {{ contact.first_name }}!")
        look(page, f"{db}-versions")

        # a test send of the draft, with the keyboard
        page.go_back()
        page.get_by_label("For the contact").fill("ada@example.com")
        page.get_by_label("To", exact=True).fill("qa@acme.example")
        page.get_by_role("button", name="Send test").focus()
        page.keyboard.press("Enter")
        expect(page.get_by_role("status").first).to_contain_text("Test sent to qa@acme.example")
        (received,) = sink.to("qa@acme.example")
        assert received.message["Subject"] == "[Test] Hello Ada"
        assert "Welcome back Ada!" in received.part("html")
        expect(page.get_by_text("Latest test sends (1)")).to_be_visible()
        expect(preview.get_by_role("heading", name="Welcome back Ada!")).to_be_visible()
        page.get_by_text("Latest test sends (1)").click()
        expect(page.locator("details.tests li")).to_contain_text("qa@acme.example · sent")
        look(page, f"{db}-test-sent")
        # the live preview asks for renders only (the page itself was once polled by the
        # graph page's script, which mistook the editor's live inputs for its own marker)
        assert fetched == {"/app/templates/render.json"}
        assert not script_errors, script_errors


def test_try_a_contact_on_the_abandoned_cart(conveyor, acme, chromium, database_url):
    tenant, _ = acme
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api,
    ):
        made = api.post("/contacts", json={"email": "ada@example.com", "first_name": "Ada"})
        assert made.status_code == 201
        page = chromium.new_page(viewport={"width": 1360, "height": 900}, bypass_csp=True)
        frame.sign_in(page, server.url, "mia@acme.example")
        page.goto(f"{server.url}/app/automations/abandoned-cart")
        page.get_by_role("link", name="test a contact").click()
        page.wait_for_url("**/app/automations/abandoned-cart/try")
        expect(page.get_by_label("Events that happen")).to_have_value("cart_updated")
        look(page, f"{db}-try")

        page.get_by_label("Contact").fill("ada@example.com")
        page.get_by_label("Contact").press("Enter")  # the keyboard submits
        path = page.locator("ol.path")
        expect(path.locator("li")).to_have_count(6)
        first = path.locator("li").first
        expect(first).to_contain_text("wait-for-order")
        expect(first).to_contain_text("at the start")
        expect(path.locator("li").nth(1)).to_contain_text("+1 hour")
        expect(path.locator("li").nth(1)).to_contain_text("timed out after 1 hour")
        expect(path).to_contain_text("cart-reminder-1")
        expect(path).to_contain_text("+1 day 1 hour")
        expect(page.get_by_role("row", name="second-reminder")).to_contain_text("cart-reminder-2")
        look(page, f"{db}-try-path")

        # an order half an hour in: the goal, and no reminder
        page.get_by_label("Events that happen").fill(
            "cart_updated\norder_completed after 30 minutes"
        )
        page.get_by_role("button", name="Run the test").click()
        expect(page.locator("ol.path")).to_contain_text("goal_reached")
        expect(page.locator("ol.path")).not_to_contain_text("cart-reminder-1")
        look(page, f"{db}-try-goal")
    assert conveyor.delivery.messages(tenant.workspace) == []
