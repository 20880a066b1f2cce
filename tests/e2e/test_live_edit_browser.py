"""Publishing a new version of a live automation in headless Chromium against the real app on
SQLite (PostgreSQL: see test_panel_browser.BROWSER): the review page, a chosen move, the publish,
and the counts where they moved; axe-core on every page, the keyboard to reach the action.
Screenshots go to /tmp/liveedit-shots."""

from __future__ import annotations

from pathlib import Path

import yaml
from playwright.sync_api import Page, expect

from conveyor.api.app import create_app
from conveyor.services.contacts import ContactChange
from tests.e2e import test_panel_browser as frame
from tests.e2e.test_panel_browser import BROWSER_ON_SQLITE, PASSWORD
from tests.integration.conftest import LiveServer, make_tenant
from tests.integration.test_live_edits import V1, V2

pytestmark = BROWSER_ON_SQLITE

SHOTS = Path("/tmp/liveedit-shots")


def look(page: Page, name: str) -> None:
    frame.SHOTS = SHOTS
    frame.check_accessibility(page, name)


def test_review_move_and_publish(conveyor, chromium, database_url):
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    acme = make_tenant(conveyor, "acme")
    ws = acme.workspace
    conveyor.signin.create_user(ws, "mia@acme.example", "marketer", PASSWORD, name="Mia Marketer")
    conveyor.automations.apply(ws, {**V1, "name": "Welcome"})
    conveyor.automations.set_status(ws, "welcome", "active")
    for i in range(3):
        cid = conveyor.contacts.create(ws, ContactChange({"email": f"c{i}@ex.com"})).id
        conveyor.engine.enroll(ws, "welcome", cid)
    with LiveServer(create_app(conveyor)) as server:
        page = chromium.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)
        frame.sign_in(page, server.url, "mia@acme.example")
        page.goto(f"{server.url}/app/automations/welcome")
        frame.tab_to(page, "Publish a new version…", presses=60)
        page.keyboard.press("Enter")
        page.wait_for_url("**/app/automations/welcome/publish")
        expect(page.get_by_role("heading", name="Publish a new version of Welcome")).to_be_visible()
        row = page.locator('tr[data-position="1:week"]')
        expect(row.locator("[data-count]")).to_have_text("3")
        look(page, f"{db}-publish-edit")

        # a YAML mistake is shown on the field, nothing saved
        page.get_by_label("The new version (YAML)").fill("key: [oops")
        page.get_by_role("button", name="Review the change").click()
        expect(page.locator(".field-error")).to_contain_text("not YAML (line")
        look(page, f"{db}-publish-yaml-error")

        page.get_by_label("The new version (YAML)").fill(
            yaml.safe_dump({**V2, "name": "Welcome"}, sort_keys=False)
        )
        page.get_by_role("button", name="Review the change").click()
        expect(page.get_by_role("heading", name="Review version 2 of Welcome")).to_be_visible()
        expect(page.locator(".diff .removed").first).to_be_visible()
        expect(row.locator(".badge")).to_have_text("removed")
        choice = page.get_by_label("Where the 3 contacts at week of version 1 go")
        expect(choice).to_have_value("")  # staying is the default
        choice.select_option("day")
        look(page, f"{db}-publish-review")
        page.get_by_role("button", name="Publish version 2").click()
        page.wait_for_url("**/app/automations/welcome")
        expect(page.locator(".flash")).to_have_text(
            "Published version 2. Moved 3 contacts (3 from week to day)."
        )
        look(page, f"{db}-publish-done")

        # the counts moved: 3 contacts at `day` of version 2, none left at version 1's `week`
        page.goto(f"{server.url}/app/automations/welcome/publish")
        expect(page.locator('tr[data-position="2:day"] [data-count]')).to_have_text("3")
        expect(page.locator('tr[data-position="1:week"]')).to_have_count(0)
        look(page, f"{db}-publish-after")
        page.close()
