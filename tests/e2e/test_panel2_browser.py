"""The panel's segments, messages, CRM and settings pages in headless Chromium against the real app
on SQLite (PostgreSQL: see test_panel_browser.BROWSER), with the frame's helpers: real seeded data,
axe-core on every page, the keyboard, a viewer refused each change, and nothing of another
workspace. Screenshots go to /tmp/panel2-shots."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor
from conveyor.services.contacts import ContactChange
from conveyor.services.crm.writer import DealDraft
from tests.e2e import test_panel_browser as frame
from tests.e2e.test_panel_browser import BROWSER_ON_SQLITE, PASSWORD, ROOT, sign_in
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.support import flows
from tests.support.smtp import SmtpSink

pytestmark = BROWSER_ON_SQLITE

SHOTS = Path("/tmp/panel2-shots")


def look(page: Page, name: str) -> None:
    frame.SHOTS = SHOTS
    frame.check_accessibility(page, name)


@pytest.fixture
def tenants(conveyor: Conveyor) -> tuple[Tenant, Tenant]:
    acme = make_tenant(conveyor, "acme")
    globex = make_tenant(conveyor, "globex")
    ws = acme.workspace
    conveyor.signin.create_user(ws, "mia@acme.example", "marketer", PASSWORD, name="Mia Marketer")
    conveyor.signin.create_user(ws, "vic@acme.example", "viewer", PASSWORD, name="Vic Viewer")
    conveyor.segments.save(ws, "vips", "VIP customers", {"tag": "vip"}, create=True)
    conveyor.segments.save(ws, "nobody", "Nobody yet", {"tag": "never-given"}, create=True)
    conveyor.segments.save(
        globex.workspace, "globex-secret", "Globex secret", {"tag": "vip"}, create=True
    )
    return acme, globex


def add(api: httpx.Client, email: str, tags: list[str]) -> int:
    made = api.post("/contacts", json={"email": email, "tags": tags})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def test_segments_list_members_and_why(conveyor, tenants, chromium, database_url):
    acme, globex = tenants
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
        httpx.Client(base_url=server.url, headers=globex.admin, timeout=10) as other,
    ):
        for n in range(53):
            add(api, f"vip{n:02}@example.com", ["vip"])
        add(api, "plain@example.com", ["newsletter"])
        add(other, "globex-vip@example.com", ["vip"])
        page = frame_page(chromium)
        sign_in(page, server.url, "vic@acme.example")  # reading needs no more than a viewer

        page.get_by_role("link", name="Segments").click()
        page.wait_for_url("**/app/segments")
        expect(page.get_by_role("row", name="VIP customers")).to_contain_text("53")
        expect(page.get_by_role("row", name="Nobody yet")).to_contain_text("0")
        expect(page.get_by_text("Globex secret")).to_have_count(0)
        look(page, f"{db}-segments")

        # the keyboard reaches a segment and opens it
        frame.tab_to(page, "VIP customers")
        page.keyboard.press("Enter")
        page.wait_for_url("**/app/segments/vips")
        expect(page.locator('[data-count="members"]')).to_have_text("53")
        members = page.locator("table.data tbody tr")
        expect(members).to_have_count(50)
        first_page = members.first.inner_text()
        page.get_by_role("link", name="More members →").click()
        expect(members).to_have_count(3)
        assert members.first.inner_text() != first_page
        expect(page.get_by_role("link", name="More members →")).to_have_count(0)
        look(page, f"{db}-segment-members-page-2")

        # why in, why not, and a contact that is not there (shown by the field, not a 5xx)
        page.get_by_label("Email, external id or contact id").fill("vip07@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator(".answer")).to_contain_text("is in this segment now")
        expect(page.locator(".verdict.held")).to_have_count(1)
        look(page, f"{db}-segment-why-in")
        page.get_by_label("Email, external id or contact id").fill("plain@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator(".answer")).to_contain_text("is not in this segment now")
        expect(page.locator(".verdict.failed")).to_have_count(1)
        look(page, f"{db}-segment-why-not")
        page.get_by_label("Email, external id or contact id").fill("globex-vip@example.com")
        page.get_by_role("button", name="Explain").click()
        expect(page.locator(".field-error")).to_contain_text("no contact with email")
        look(page, f"{db}-segment-why-unknown")

        page.goto(f"{server.url}/app/segments/nobody")
        expect(page.get_by_text("No member now")).to_be_visible()
        look(page, f"{db}-segment-empty")

        # another workspace's segment is not found from this session
        page.goto(f"{server.url}/app/segments/globex-secret")
        expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def deliver(conveyor: Conveyor) -> None:
    """The worker's rounds: engine and delivery until nothing is due (in a thread: Playwright's
    sync API keeps an event loop running in this one)."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(flows.settle, conveyor).result()


def frame_page(chromium: Browser) -> Page:
    return chromium.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)


def test_messages_filter_and_a_dead_letter_sent_again(conveyor, tenants, chromium, database_url):
    """The welcome email dies against an SMTP server that is down; the outbox shows it with its
    attempts and error; the marketer's Retry makes it pending, and delivery then sends it."""
    acme, _ = tenants
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    clock = conveyor.clock
    sink = SmtpSink()  # not started: every attempt is refused
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
    ):
        ws = acme.workspace
        conveyor.catalog.create_list(ws, "newsletter")
        put = api.put(
            "/channels/email", json={"from": "Acme <news@acme.example>", "smtp_url": sink.url}
        )
        assert put.status_code == 200, put.text
        for path in sorted((ROOT / "examples" / "templates").glob("*.yaml")):
            for template in yaml.safe_load(path.read_text()):
                api.post("/templates", json=template)
        conveyor.automations.apply(ws, frame.example("welcome-series"))
        conveyor.automations.set_status(ws, "welcome-series", "active")
        cid = frame.subscribe(api, "ada@example.com")
        for _ in range(40):
            deliver(conveyor)
            rows = conveyor.delivery.messages(ws, contact_id=cid)
            if rows and rows[0].status == "dead":  # the first of the series
                break
            clock.advance(timedelta(hours=12))
        else:
            pytest.fail(f"the message never died: {rows}")
        dead = rows[0]

        page = frame_page(chromium)
        sign_in(page, server.url, "mia@acme.example")
        page.get_by_role("link", name="Messages").click()
        row = page.locator(f'tr[data-message="{dead.id}"]')
        expect(row).to_contain_text("dead")
        expect(row).to_contain_text("welcome-1")
        expect(row.locator("td.num")).to_have_text(str(dead.attempts))
        expect(row.locator(".error-cell")).not_to_have_text("—")
        look(page, f"{db}-messages")
        page.get_by_label("State").select_option("sent")
        page.get_by_role("button", name="Filter").click()
        expect(page.get_by_text("No message matches")).to_be_visible()
        look(page, f"{db}-messages-none")
        page.get_by_label("State").select_option("dead")
        page.get_by_label("Channel").select_option("email")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("tbody tr")).to_have_count(1)

        sink.start()
        try:
            page.get_by_role("button", name=f"Retry message {dead.id}").click()
            expect(page.get_by_role("status")).to_contain_text("will be sent again")
            page.wait_for_url("**/app/messages?state=dead&channel=email")
            again = conveyor.delivery.message(ws, dead.id)
            assert (again.status, again.attempts, again.error) == ("pending", 0, None)
            deliver(conveyor)  # the worker's next round
            assert conveyor.delivery.message(ws, dead.id).status == "sent"
            assert len(sink.to("ada@example.com")) == 1
        finally:
            sink.stop()
        page.goto(f"{server.url}/app/messages?state=sent")
        expect(page.locator(f'tr[data-message="{dead.id}"]')).to_contain_text("sent")
        look(page, f"{db}-messages-sent")


def seed_board(conveyor: Conveyor, acme: Tenant, globex: Tenant) -> dict[str, int]:
    pipeline = yaml.safe_load((ROOT / "examples" / "pipelines" / "sales.yaml").read_text())
    ids = {}
    for tenant in (acme, globex):
        conveyor.crm.apply_pipeline(tenant.workspace, pipeline)
    contact = conveyor.contacts.create(
        acme.workspace, ContactChange(values={"email": "cto@big.example"})
    )
    for title, stage, value in (
        ("Big Co rollout", "Lead", 12000),
        ("Small Co pilot", "Lead", 1500),
        ("Mid Co renewal", "Proposal", 4800),
    ):
        deal = conveyor.crm.create_deal(
            acme.workspace,
            DealDraft({"title": title, "stage": stage, "value": value, "currency": "USD",
                       "contact_id": contact.id, "pipeline": "sales"}),
        )  # fmt: skip
        ids[title] = deal["id"]
    other = conveyor.contacts.create(
        globex.workspace, ContactChange(values={"email": "x@g.example"})
    )
    conveyor.crm.create_deal(
        globex.workspace,
        DealDraft({"title": "Globex secret deal", "value": 1, "contact_id": other.id,
                   "pipeline": "sales"}),
    )  # fmt: skip
    return ids


def test_crm_board_moves_by_keyboard_and_by_drag(conveyor, tenants, chromium, database_url):
    acme, globex = tenants
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    conveyor.signin.create_user(acme.workspace, "sal@acme.example", "sales", PASSWORD, name="Sal")
    ids = seed_board(conveyor, acme, globex)
    with LiveServer(create_app(conveyor)) as server:
        page = frame_page(chromium)
        sign_in(page, server.url, "sal@acme.example")
        page.get_by_role("link", name="CRM").click()
        page.wait_for_url("**/app/crm/sales")
        lead = page.locator('.column[data-stage="Lead"]')
        expect(lead.locator(".deal")).to_have_count(2)
        expect(lead.locator(".totals")).to_contain_text("13,500.00 USD")
        expect(page.get_by_text("Globex secret deal")).to_have_count(0)
        forecast = page.get_by_role("row", name="Proposal")
        expect(forecast).to_contain_text("4,800.00")
        expect(forecast).to_contain_text("2,880.00")  # 60 % of it
        look(page, f"{db}-crm-board")

        # the keyboard: the deal's stage select, then its Move button
        select = page.get_by_label("Stage of Small Co pilot")
        select.focus()
        select.select_option("Qualified")
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.get_by_role("status")).to_contain_text("moved to Qualified")
        expect(page.locator('.column[data-stage="Qualified"] .deal')).to_contain_text(
            "Small Co pilot"
        )

        # drag and drop: the same server action
        card = page.locator(f'.deal[data-deal="{ids["Big Co rollout"]}"]')
        card.drag_to(page.locator('.column[data-stage="Negotiation"]'))
        expect(page.get_by_role("status")).to_contain_text("moved to Negotiation")
        assert conveyor.crm.deal(acme.workspace, ids["Big Co rollout"])["stage"] == "Negotiation"
        contact = conveyor.crm.deal(acme.workspace, ids["Big Co rollout"])["contact_id"]
        changes, _ = conveyor.contacts.events(acme.workspace, contact, name="deal.stage_changed")
        assert {(e.properties["from"], e.properties["to"]) for e in changes} == {
            ("Lead", "Qualified"),
            ("Lead", "Negotiation"),
        }
        look(page, f"{db}-crm-board-moved")

        viewer = frame_page(chromium)
        sign_in(viewer, server.url, "vic@acme.example")
        viewer.goto(f"{server.url}/app/crm/sales")
        expect(viewer.locator(".deal")).to_have_count(3)
        expect(viewer.locator(".deal[draggable]")).to_have_count(0)
        expect(viewer.get_by_role("button", name="Move", exact=False)).to_have_count(0)
        look(viewer, f"{db}-crm-board-viewer")


def test_settings_channels_policy_keys_and_team(conveyor, tenants, chromium, database_url):
    acme, _ = tenants
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    ws = acme.workspace
    conveyor.signin.create_user(ws, "ann@acme.example", "admin", PASSWORD, name="Ann Admin")
    with LiveServer(create_app(conveyor)) as server:
        page = frame_page(chromium)
        sign_in(page, server.url, "ann@acme.example")
        page.get_by_role("link", name="Settings").click()
        page.wait_for_url("**/app/settings")
        expect(page.get_by_role("heading", name="API keys")).to_be_visible()
        look(page, f"{db}-settings")

        # email: a bad SMTP URL is shown by its field; a good one is saved
        page.get_by_label("From", exact=True).fill("Acme <news@acme.example>")
        page.get_by_label("SMTP URL").fill("ftp://nowhere")
        page.get_by_role("button", name="Save email settings").click()
        expect(page.locator("#err-email-smtp_url")).to_be_visible()
        expect(page.get_by_label("From")).to_have_value("Acme <news@acme.example>")
        look(page, f"{db}-settings-email-error")
        page.get_by_label("SMTP URL").fill("smtp://mail:secret@127.0.0.1:2525")
        page.get_by_role("button", name="Save email settings").click()
        expect(page.get_by_role("status").first).to_contain_text("Email settings saved")
        expect(page.locator(".facts").first).to_contain_text("news@acme.example")
        expect(page.get_by_text("secret@")).to_have_count(0)  # the password is masked
        described = conveyor.channels.describe(conveyor.workspaces.get(ws.name))
        assert described["email"]["effective_from"] == "Acme <news@acme.example>"

        # the send policy: YAML errors and policy errors inline, then saved
        policy = page.get_by_label("Policy (YAML; empty for none)")
        policy.fill("caps: [unclosed")
        page.get_by_role("button", name="Save policy").click()
        expect(page.locator("#err-policy")).to_contain_text("not YAML")
        policy.fill("caps:\n  email:\n    - {max: -1, per: 1 day}\n")
        page.get_by_role("button", name="Save policy").click()
        expect(page.locator("#err-policy")).to_contain_text("caps")
        look(page, f"{db}-settings-policy-error")
        good = (ROOT / "examples" / "policies" / "no-collisions.yaml").read_text()
        policy.fill(good)
        page.get_by_role("button", name="Save policy").click()
        expect(page.get_by_role("status").first).to_contain_text("Send policy saved")
        saved = conveyor.workspaces.get(ws.name).settings["send_policy"]
        assert saved["repeat_within"] == "30 days"

        # keys: made and shown once, listed by prefix, revoked (and then refused by the API)
        page.get_by_label("New key's name").fill("CRM sync")
        page.get_by_label("Kind").select_option("admin")
        page.get_by_role("button", name="Create key").click()
        secret = page.get_by_label("The new key").input_value()
        row = page.locator("tr", has_text="CRM sync")
        expect(row).to_contain_text(secret[:8])
        expect(row.get_by_text(secret)).to_have_count(0)
        look(page, f"{db}-settings-new-key")
        with httpx.Client(base_url=server.url, timeout=10) as api:
            key = {"Authorization": f"Bearer {secret}"}
            assert api.get("/segments", headers=key).status_code == 200
            page.on("dialog", lambda dialog: dialog.accept())
            page.get_by_role("button", name="Revoke key CRM sync").click()
            expect(page.get_by_role("status").first).to_contain_text("is revoked")
            assert api.get("/segments", headers=key).status_code == 401
        page.reload()
        expect(page.get_by_label("The new key")).to_have_count(0)  # never shown again

        # team: add with a role (told how they get a password), then change the role
        page.get_by_role("textbox", name="Email", exact=True).fill("nick@acme.example")
        page.get_by_role("textbox", name="Name", exact=True).fill("Nick New")
        page.get_by_label("Role", exact=True).select_option("sales")
        page.get_by_role("button", name="Add member").click()
        expect(page.get_by_role("status").first).to_contain_text("conveyor user password")
        page.get_by_label("Role of nick@acme.example", exact=True).select_option("marketer")
        page.get_by_role("button", name="Change role of nick@acme.example").click()
        expect(page.get_by_role("status").first).to_contain_text("is now a marketer")
        assert {m["email"]: m["role"] for m in conveyor.crm.members(ws)}["nick@acme.example"] == (
            "marketer"
        )
        page.get_by_role("button", name="Add member").click()
        expect(page.locator("#err-team-name")).to_contain_text("1-255 characters")
        page.get_by_role("textbox", name="Name", exact=True).fill("Nick Again")
        page.get_by_role("textbox", name="Email", exact=True).fill("nick@acme.example")
        page.get_by_role("button", name="Add member").click()
        expect(page.locator("#err-team-email")).to_contain_text("exists")
        look(page, f"{db}-settings-team")

        # a viewer reads the channels and the policy, and sees no form, key or member
        viewer = frame_page(chromium)
        sign_in(viewer, server.url, "vic@acme.example")
        viewer.goto(f"{server.url}/app/settings")
        expect(viewer.locator("pre code")).to_contain_text("repeat_within: 30 days")
        expect(viewer.get_by_role("heading", name="API keys")).to_have_count(0)
        expect(viewer.get_by_role("heading", name="Team")).to_have_count(0)
        expect(viewer.locator("form[method=post]")).to_have_count(1)  # signing out only
        look(viewer, f"{db}-settings-viewer")


def test_reports_overview_and_an_automations_funnel(conveyor, tenants, chromium, database_url):
    """Three subscribers get the welcome email through a real SMTP server: the reports count
    them sent, draw them in the series and in the funnel; a bad range is shown by its field."""
    acme, _ = tenants
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    ws = acme.workspace
    sink = SmtpSink().start()
    try:
        with (
            LiveServer(create_app(conveyor)) as server,
            httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
        ):
            conveyor.catalog.create_list(ws, "newsletter")
            api.put("/channels/email", json={"from": "A <news@acme.example>", "smtp_url": sink.url})
            for path in sorted((ROOT / "examples" / "templates").glob("*.yaml")):
                for template in yaml.safe_load(path.read_text()):
                    api.post("/templates", json=template)
            conveyor.automations.apply(ws, frame.example("welcome-series"))
            conveyor.automations.set_status(ws, "welcome-series", "active")
            for name in ("ada", "grace", "linus"):
                frame.subscribe(api, f"{name}@example.com")
            deliver(conveyor)
            assert len(sink.messages) == 3

            page = frame_page(chromium)
            sign_in(page, server.url, "mia@acme.example")
            page.get_by_role("link", name="Reports").click()
            page.wait_for_url("**/app/reports")
            expect(page.locator('[data-kpi="sent"]')).to_have_text("3")
            expect(page.locator('[data-kpi="opens_machine"]')).to_have_text("0")
            expect(page.locator("svg.timechart title")).to_contain_text("Sent: 3")
            expect(page.get_by_role("row", name="welcome-series")).to_contain_text("3")
            look(page, f"{db}-reports")

            page.get_by_role("link", name="welcome-series").click()
            page.wait_for_url("**/app/reports/automations/welcome-series?**")
            expect(page.locator("svg.funnel title")).to_contain_text("welcome: 3 reached")
            expect(page.get_by_role("row", name="welcome")).to_contain_text("3")
            look(page, f"{db}-reports-automation")

            page.get_by_label("From", exact=True).fill("2030-01-10")
            page.get_by_label("To", exact=True).fill("2030-01-01")
            page.get_by_role("button", name="Show").click()
            expect(page.locator(".field-error")).to_be_visible()
            look(page, f"{db}-reports-bad-range")
    finally:
        sink.stop()
