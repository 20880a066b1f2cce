"""The segment builder and the campaign composer in headless Chromium against the real app on
SQLite (PostgreSQL: see test_panel_browser.BROWSER): scenario 5's segment built from an empty
builder (the count follows each step), saved, equal to examples/segments/good-customers.yaml; then
a campaign composed to it and scheduled. The flows run with the panel's CSP enforced (no violation
may be reported); axe-core checks the pages in a second tab. Screenshots go to /tmp/editor-shots."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor
from conveyor.domain.fields import format_datetime
from tests.e2e import test_panel_browser as frame
from tests.e2e.test_panel_browser import BROWSER_ON_SQLITE, PASSWORD, ROOT, sign_in
from tests.integration.conftest import LiveServer, Tenant, make_tenant

pytestmark = BROWSER_ON_SQLITE

SHOTS = Path("/tmp/editor-shots")
GOOD = yaml.safe_load((ROOT / "examples" / "segments" / "good-customers.yaml").read_text())


def look(page: Page, name: str) -> None:
    frame.SHOTS = SHOTS
    frame.check_accessibility(page, name)


def strict_page(chromium: Browser, violations: list[str]) -> Page:
    """A tab with the panel's CSP in force: any violation (an inline script or style) is kept."""
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
    return page


def seed_orders(conveyor: Conveyor, api: httpx.Client, tenant: Tenant) -> None:
    """Four customers: only Ada ordered (an item or more) three times in the last 90 days."""
    now = conveyor.clock.now()
    orders = {
        "ada": [(5, 2), (20, 1), (40, 3)],  # (days ago, items): a good customer
        "bob": [(3, 1), (9, 2)],  # twice only
        "cy": [(2, 0), (4, 1), (6, 1)],  # one order without items
        "dee": [(100, 1), (110, 1), (120, 2)],  # three, but long ago
        "eve": [],  # never ordered
    }
    for user, placed in orders.items():
        traits = {"email": f"{user}@example.com", "first_name": user.title()}
        made = api.post(
            "/v1/identify", headers=tenant.write, json={"userId": user, "traits": traits}
        )
        assert made.status_code == 200, made.text
        for days, items in placed:
            sent = api.post(
                "/v1/track",
                headers=tenant.write,
                json={
                    "userId": user,
                    "event": "order_completed",
                    "properties": {"items": items, "total": 40 * items},
                    "timestamp": format_datetime(now - timedelta(days=days)),
                },
            )
            assert sent.status_code == 200, sent.text


@pytest.fixture
def acme(conveyor: Conveyor) -> Tenant:
    tenant = make_tenant(conveyor, "acme")
    ws = tenant.workspace
    conveyor.signin.create_user(ws, "mia@acme.example", "marketer", PASSWORD, name="Mia Marketer")
    conveyor.signin.create_user(ws, "vic@acme.example", "viewer", PASSWORD, name="Vic Viewer")
    other = make_tenant(conveyor, "globex")
    conveyor.segments.save(other.workspace, "globex-only", "Globex", {"tag": "x"}, create=True)
    return tenant


def expect_count(page: Page, value: int) -> None:
    expect(page.locator("#count [data-count]")).to_have_text(f"{value:,}")
    expect(page.locator("#builder")).not_to_have_attribute("aria-busy", "true")


def test_scenario_5_segment_is_built_counted_explained_and_saved(
    conveyor: Conveyor, acme: Tenant, chromium: Browser, database_url: str
):
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    violations: list[str] = []
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
    ):
        seed_orders(conveyor, api, acme)
        page = strict_page(chromium, violations)
        sign_in(page, server.url, "mia@acme.example")
        page.get_by_role("link", name="Segments").click()
        page.get_by_role("link", name="New segment").click()
        page.wait_for_url("**/app/segments/new")
        expect(page.locator("#tree .group")).to_have_count(1)
        expect_count_empty = page.locator("#count [data-count]")
        expect(expect_count_empty).to_have_text("—")

        page.get_by_label("Name").fill(GOOD["name"])
        page.get_by_label("Key").fill(GOOD["key"])

        # the keyboard: choose the kind, Tab to "Add condition", Enter; focus lands in its form
        page.get_by_label("Kind of condition to add").focus()
        page.get_by_label("Kind of condition to add").select_option("event")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.textContent") == "Add condition"
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.dataset.key") == "event"
        page.keyboard.type("order_completed")
        expect_count(page, 4)  # everyone who ever ordered

        page.get_by_role("button", name="Add a property filter").click()
        page.get_by_label("Property", exact=True).fill("items")
        page.get_by_label("Operator", exact=True).select_option("gte")
        page.get_by_label("Value", exact=True).fill("1")
        expect_count(page, 4)  # Cy still has orders with items

        page.get_by_label("How many times: which").select_option("gte")
        page.get_by_label("at least").fill("3")
        expect_count(page, 2)  # Ada, and Dee (long ago)

        # a bad duration: shown on the predicate and its control, nothing counted
        page.get_by_label("Within the last").fill("ninety days")
        expect(page.locator(".pred .node-error")).to_contain_text("within")
        expect(page.get_by_label("Within the last")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#count-status")).to_contain_text("fix the condition")
        page.get_by_label("Within the last").fill("90 days")
        expect_count(page, 1)
        expect(page.locator(".pred .node-error")).to_be_hidden()

        # explain for a contact, before saving
        page.get_by_label("Contact id, email or external id").fill("dee@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator("#explain-result .answer")).to_contain_text("would be not in")
        page.get_by_label("Contact id, email or external id").fill("ada@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator("#explain-result .answer")).to_contain_text("would be in")
        page.get_by_label("Contact id, email or external id").fill("nobody@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator("#explain-error")).to_be_visible()

        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{db}-builder-good-customers.png"), full_page=True)
        page.get_by_role("button", name="Save segment").click()
        page.wait_for_url("**/app/segments/good-customers")
        expect(page.locator('[data-count="members"]')).to_have_text("1")
        saved = conveyor.segments.get(acme.workspace, "good-customers")
        assert saved.definition == GOOD["condition"]
        assert saved.name == GOOD["name"]

        # editing it again shows the same condition, and saving unchanged keeps it equal
        page.get_by_role("link", name="Edit conditions").click()
        page.wait_for_url("**/app/segments/good-customers/edit")
        expect(page.get_by_label("Event", exact=True)).to_have_value("order_completed")
        expect_count(page, 1)
        page.get_by_role("button", name="Save segment").click()
        page.wait_for_url("**/app/segments/good-customers")
        saved = conveyor.segments.get(acme.workspace, "good-customers")
        assert saved.definition == GOOD["condition"]

        # a group of any, with a Not: built, counted, and an invalid save shown and refused
        page.goto(f"{server.url}/app/segments/new")
        page.get_by_label("Key").fill("good-customers")  # taken
        page.get_by_role("button", name="Add group").click()
        group = page.locator(".group .group")
        group.get_by_label("Contacts who match").select_option("any")
        group.get_by_label("Kind of condition to add").select_option("field")
        group.get_by_role("button", name="Add condition").click()
        group.get_by_label("Field", exact=True).select_option("email")
        group.get_by_label("Operator", exact=True).select_option("ends_with")
        group.get_by_label("Value", exact=True).fill("@example.com")
        expect_count(page, 5)
        group.get_by_role("button", name="Not: turn this contact field condition around").click()
        expect_count(page, 0)
        page.get_by_role("button", name="Save segment").click()
        expect(page.locator("#segment-key-error")).to_contain_text("exists already")
        assert len(conveyor.segments.all(acme.workspace)) == 1
        page.screenshot(path=str(SHOTS / f"{db}-builder-group-not.png"), full_page=True)
        assert violations == []

        # axe on the builder in its states (axe is injected: this tab bypasses the CSP)
        checker = chromium.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        sign_in(checker, server.url, "mia@acme.example")
        checker.goto(f"{server.url}/app/segments/good-customers/edit")
        expect_count(checker, 1)
        look(checker, f"{db}-builder-edit")
        checker.get_by_label("Within the last").fill("ninety days")
        expect(checker.locator(".pred .node-error")).to_be_visible()
        look(checker, f"{db}-builder-error")

        # a viewer may try conditions but not save them
        viewer = strict_page(chromium, violations)
        sign_in(viewer, server.url, "vic@acme.example")
        viewer.goto(f"{server.url}/app/segments/good-customers/edit")
        expect_count(viewer, 1)
        expect(viewer.get_by_role("button", name="Save segment")).to_have_count(0)
        assert violations == []


def tag(api: httpx.Client, user: str, *tags: str) -> None:
    found = api.get("/contacts/lookup", params={"external_id": user})
    done = api.post(f"/contacts/{found.json()['id']}/tags", json={"tags": list(tags)})
    assert done.status_code == 200, done.text


def test_a_campaign_is_composed_to_the_segment_and_scheduled(
    conveyor: Conveyor, acme: Tenant, chromium: Browser, database_url: str
):
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    violations: list[str] = []
    ws = acme.workspace
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
    ):
        seed_orders(conveyor, api, acme)
        tag(api, "bob", "vip")
        tag(api, "cy", "vip", "no-mail")
        conveyor.segments.save(ws, GOOD["key"], GOOD["name"], GOOD["condition"], create=True)
        for template in yaml.safe_load((ROOT / "examples/templates/newsletter.yaml").read_text()):
            assert api.post("/templates", json=template).status_code in (200, 201)
        page = strict_page(chromium, violations)
        sign_in(page, server.url, "mia@acme.example")
        page.get_by_role("link", name="Campaigns").click()
        page.wait_for_url("**/app/campaigns")
        expect(page.get_by_text("No campaign yet")).to_be_visible()
        page.get_by_role("link", name="New campaign").click()
        page.wait_for_url("**/app/campaigns/new")

        # bad input first: the errors come back on their fields, nothing is saved
        page.get_by_label("Key", exact=False).fill("Private Sale!")
        page.get_by_role("button", name="Save draft").click()
        expect(page.locator("#errors")).to_be_visible()
        expect(page.get_by_label("Key")).to_have_attribute("aria-invalid", "true")
        assert conveyor.campaigns.all(ws) == []

        page.get_by_label("Name").fill("Private sale")
        page.get_by_label("Key").fill("private-sale")
        page.get_by_label("Template", exact=True).select_option("newsletter")
        count = page.locator("#count [data-count]")
        expect(count).to_have_text("—")
        page.get_by_role("group", name="Or in any of these segments").get_by_label(
            GOOD["name"]
        ).check()
        expect(count).to_have_text("1")  # Ada
        page.get_by_label("Or tagged with any of").fill("vip")
        expect(count).to_have_text("3")  # and Bob and Cy
        page.get_by_label("Tagged with any of", exact=False).last.fill("no-mail")
        expect(count).to_have_text("2")  # not Cy
        # at 09:00 on a date, in each contact's own timezone; a sample A/B test is refused
        page.get_by_label("At a local time in each contact's timezone").check()
        page.get_by_label("Local date").fill("2031-03-03")
        page.get_by_label("Local time", exact=True).fill("09:00")
        page.get_by_label("Throttle: at most per hour").fill("500")
        page.get_by_role("button", name="Save draft").click()
        # a local-time send cannot be throttled: said on the field, nothing saved
        expect(page.locator("#throttle-error")).to_contain_text("cannot be throttled")
        expect(page.get_by_label("Throttle: at most per hour")).to_have_attribute(
            "aria-invalid", "true"
        )
        assert conveyor.campaigns.all(ws) == []
        expect(count).to_have_text("2")  # the form came back as it was
        page.get_by_label("Throttle: at most per hour").fill("")
        page.get_by_role("button", name="Save draft").click()
        page.wait_for_url("**/app/campaigns/private-sale")
        expect(page.locator(".flash")).to_contain_text("saved as a draft")
        expect(page.locator(".stats dd").first).to_have_text("2")
        info = conveyor.campaigns.get(ws, "private-sale")
        assert info.status == "draft"
        assert info.audience == {
            "segments": ["good-customers"],
            "tags": ["vip"],
            "exclude": {"tags": ["no-mail"]},
        }
        assert info.schedule == {"date": "2031-03-03", "local_time": "09:00", "late": "next_day"}

        # the draft opens in the composer as it was saved
        page.get_by_role("link", name="Edit").click()
        expect(page.get_by_label("Local date")).to_have_value("2031-03-03")
        expect(page.locator("#count [data-count]")).to_have_text("2")
        page.get_by_role("button", name="Save draft").click()
        expect(page.locator(".flash")).to_contain_text("unchanged")
        page.get_by_role("button", name="Schedule").click()
        expect(page.locator(".flash")).to_contain_text("is scheduled")
        assert conveyor.campaigns.get(ws, "private-sale").status == "scheduled"
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{db}-campaign-scheduled.png"), full_page=True)
        page.get_by_role("button", name="Back to draft").click()
        expect(page.locator(".flash")).to_contain_text("back to a draft")
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Cancel campaign").click()
        expect(page.locator(".flash")).to_contain_text("cancelled")
        assert conveyor.campaigns.get(ws, "private-sale").status == "cancelled"
        assert violations == []

        checker = chromium.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        sign_in(checker, server.url, "mia@acme.example")
        checker.goto(f"{server.url}/app/campaigns")
        expect(checker.get_by_role("row", name="Private sale")).to_contain_text("cancelled")
        look(checker, f"{db}-campaigns")
        checker.goto(f"{server.url}/app/campaigns/new")
        # the keyboard: from the template, Tab to the segment's box, Space ticks it, it counts
        checker.get_by_label("Template", exact=True).focus()
        for _ in range(6):
            checker.keyboard.press("Tab")
            if checker.evaluate("document.activeElement.value") == "good-customers":
                break
        else:
            pytest.fail("Tab never reached the segment's box")
        checker.keyboard.press("Space")
        expect(checker.locator("#count [data-count]")).to_have_text("1")
        checker.get_by_label("Or tagged with any of").fill("vip")
        expect(checker.locator("#count [data-count]")).to_have_text("3")
        look(checker, f"{db}-composer")
        checker.goto(f"{server.url}/app/campaigns/private-sale")
        look(checker, f"{db}-campaign")
