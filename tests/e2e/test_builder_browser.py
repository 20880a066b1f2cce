"""The automation builder in headless Chromium against the real app on SQLite (PostgreSQL: see
test_panel_browser.BROWSER): a marketer builds scenario 4 (the abandoned cart) on the canvas from
an empty automation with the palette and the forms, sees problems inline with the CLI's words,
edits through the YAML view, saves a draft, reviews the diff, publishes; the engine runs it for a
contact, and the exported YAML equals the example file. The keyboard alone moves, copies, pastes,
deletes and undoes. axe-core on every page; screenshots go to /tmp/builder-shots."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Locator, Page, expect

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor
from conveyor.domain.automations import REGISTRY
from conveyor.domain.errors import InvalidInput
from tests.e2e import test_panel_browser as frame
from tests.e2e.test_panel2_browser import deliver, frame_page
from tests.e2e.test_panel_browser import BROWSER_ON_SQLITE, PASSWORD, ROOT
from tests.integration.conftest import LiveServer, Tenant, make_tenant

pytestmark = BROWSER_ON_SQLITE

SHOTS = Path("/tmp/builder-shots")


def look(page: Page, name: str) -> None:
    frame.SHOTS = SHOTS
    frame.check_accessibility(page, name)
    assert not getattr(page, "script_errors", []), page.script_errors


def open_page(chromium: Browser) -> Page:
    """A page whose script errors are kept (and `look` fails on any)."""
    page = frame_page(chromium)
    page.script_errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.script_errors.append(str(error)))
    return page


@pytest.fixture
def acme(conveyor: Conveyor) -> Tenant:
    tenant = make_tenant(conveyor, "acme")
    ws = tenant.workspace
    conveyor.signin.create_user(ws, "mia@acme.example", "marketer", PASSWORD, name="Mia Marketer")
    conveyor.signin.create_user(ws, "vic@acme.example", "viewer", PASSWORD, name="Vic Viewer")
    conveyor.catalog.create_list(ws, "newsletter")
    conveyor.catalog.create_list(ws, "loyal-customers")
    for path in sorted((ROOT / "examples" / "templates").glob("*.yaml")):
        for template in yaml.safe_load(path.read_text()):
            conveyor.templates.save(ws, template["key"], template["channel"], template["content"])
    return tenant


def checked(page: Page) -> None:
    """Wait until the server has checked the latest change: a change on the canvas marks the
    builder data-pending at once (scheduleCheck in builder.js), and the check that saw the
    last change clears it."""
    page.wait_for_selector("#builder:not([data-pending])", state="attached")


def inspector(page: Page) -> Locator:
    return page.locator("#inspector")


def add(page: Page, kind: str, node_id: str) -> Locator:
    page.locator("#palette").get_by_role("button", name=kind, exact=True).click()
    form = inspector(page)
    form.get_by_label("Id", exact=True).fill(node_id)
    expect(page.locator("#inspector-title")).to_contain_text(node_id)
    return form


def event_condition(form: Locator, event: str) -> None:
    form.get_by_label("Condition", exact=True).select_option(label="event")
    form.get_by_label("Event", exact=True).fill(event)
    form.get_by_label("Within", exact=True).select_option(label="since entry")


def open_node(page: Page, node_id: str) -> Locator:
    page.locator(f'#nodes button.node-main[data-node="{node_id}"]').click()
    expect(page.locator("#inspector-title")).to_contain_text(node_id)
    return inspector(page)


def yaml_view(page: Page) -> dict:
    page.get_by_role("tab", name="YAML").click()
    text = page.locator("#yaml-text").input_value()
    page.get_by_role("tab", name="Canvas").click()
    return yaml.safe_load(text)


def same(got: dict, example: dict) -> None:
    """The definitions are equal (compared node by node, so a difference reads clearly)."""
    for mine, theirs in zip(got.get("nodes", []), example["nodes"], strict=False):
        assert mine == theirs
    assert {k: v for k, v in got.items() if k != "nodes"} == {
        k: v for k, v in example.items() if k != "nodes"
    }
    assert got == example


def build_abandoned_cart(page: Page) -> None:
    """Scenario 4 from an empty automation, by the palette and the forms only."""
    form = inspector(page)
    form.get_by_label("Key", exact=True).fill("abandoned-cart")
    form.get_by_label("Name", exact=True).fill("Abandoned cart")
    form.get_by_role("button", name="Add trigger").click()
    form.get_by_label("Event", exact=True).fill("cart_updated")
    form.get_by_label("Repeat", exact=True).select_option(label="every time")

    node = add(page, "Wait until", "wait-for-order")
    event_condition(node, "order_completed")
    node.get_by_label("Timeout", exact=True).fill("1 hour")
    node = add(page, "Send email", "reminder")
    node.get_by_label("Template", exact=True).fill("cart-reminder-1")
    node = add(page, "Wait", "one-day")
    node.get_by_label("For", exact=True).fill("1 day")
    node = add(page, "Send email", "second-reminder")
    node.get_by_label("Template", exact=True).fill("cart-reminder-2")
    node.get_by_label("Next", exact=True).select_option("end")
    node = add(page, "Goal", "ordered")
    event_condition(node, "order_completed")
    node.get_by_label("Otherwise", exact=True).select_option(label="end")

    # wire the wait: "on timeout" on the canvas (an output, then the node it leads to), "next"
    # by its form
    page.get_by_role("button", name="Connect on timeout of wait-for-order").click()
    page.locator('#nodes button.node-main[data-node="reminder"]').click()
    node = open_node(page, "wait-for-order")
    expect(node.get_by_label("On timeout", exact=True)).to_have_value("reminder")
    node.get_by_label("Next", exact=True).select_option("ordered")


def test_a_marketer_builds_the_abandoned_cart_and_it_runs(conveyor, acme, chromium, database_url):
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    example = frame.example("abandoned-cart")
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
    ):
        page = open_page(chromium)
        frame.sign_in(page, server.url, "mia@acme.example")
        page.goto(f"{server.url}/app/builder")
        expect(page.get_by_role("heading", name="New automation")).to_be_visible()
        checked(page)
        expect(page.locator("#problems")).to_have_text("key: 1-64 of a-z, 0-9, - and _")
        look(page, f"{db}-builder-empty")

        # every node type of the schema is in the palette
        palette = page.locator("#palette button[data-add]")
        expect(palette).to_have_count(len(REGISTRY))

        build_abandoned_cart(page)
        checked(page)
        expect(page.locator("#problems")).to_contain_text("No problem found")
        expect(page.locator("#nodes li.node")).to_have_count(5)
        look(page, f"{db}-builder-cart")
        same(yaml_view(page), example)

        # inline validation, in the CLI's words, on the node it concerns
        node = open_node(page, "reminder")
        node.get_by_label("Template", exact=True).fill("")
        checked(page)
        broken = {**example, "nodes": [dict(n) for n in example["nodes"]]}
        broken["nodes"][1]["template"] = ""
        with pytest.raises(InvalidInput) as cli:
            conveyor.automations.validate(acme.workspace, broken)
        card = page.locator('#nodes li.node[data-id="reminder"]')
        expect(card.locator(".node-error")).to_have_text(cli.value.detail)
        expect(node.locator('.field[data-path="nodes.1.template"] .field-error')).to_have_text(
            cli.value.detail
        )
        look(page, f"{db}-builder-inline-error")
        node.get_by_label("Template", exact=True).fill("cart-reminder-9")
        checked(page)
        expect(card.locator(".node-error")).to_have_text(
            "nodes.1.template: no email template 'cart-reminder-9'"
        )
        node.get_by_label("Template", exact=True).fill("cart-reminder-1")
        checked(page)
        expect(card.locator(".node-error")).to_have_count(0)

        # the YAML view: an edit shows on the canvas; a mistake points at its line
        page.get_by_role("tab", name="YAML").click()
        area = page.locator("#yaml-text")
        text = area.input_value()
        area.fill(text.replace("for: 1 day", "for: 2 days"))
        expect(page.locator("#yaml-error")).to_have_text("")
        page.get_by_role("tab", name="Canvas").click()
        expect(page.locator('#nodes li.node[data-id="one-day"]')).to_contain_text("for: 2 days")
        page.get_by_role("tab", name="YAML").click()
        lines = area.input_value().splitlines()
        where = next(i for i, line in enumerate(lines) if "2 days" in line)
        lines[where] = lines[where].replace("for: 2 days", "for: [2 days")
        area.fill("\n".join(lines))
        expect(page.locator("#yaml-error")).to_contain_text(re.compile(r"^Line \d+, column"))
        expect(page.locator("#yaml-gutter .bad")).to_have_count(1)
        look(page, f"{db}-builder-yaml-error")
        area.fill(text)  # back to 1 day
        expect(page.locator("#yaml-error")).to_have_text("")
        page.get_by_role("tab", name="Canvas").click()
        expect(page.locator('#nodes li.node[data-id="one-day"]')).to_contain_text("for: 1 day")

        # save a draft, then review: the diff against nothing yet, then publish
        page.get_by_role("button", name="Save draft").click()
        expect(page.locator("#builder-said")).to_contain_text("Draft saved")
        (draft,) = conveyor.automation_drafts.all(acme.workspace)
        assert yaml.safe_load(draft.source) == example
        # the drafts list reopens it, as it was saved
        page.goto(f"{server.url}/app/builder/drafts")
        look(page, f"{db}-builder-drafts")
        href = page.get_by_role("link", name="Abandoned cart").get_attribute("href")
        assert href == f"/app/builder?draft={draft.id}"
        page.goto(f"{server.url}{href}")
        expect(page.locator("#nodes li.node")).to_have_count(5)
        checked(page)
        same(yaml_view(page), example)
        page.get_by_role("button", name="Review and publish").click()
        page.wait_for_url("**/app/builder/review?draft=*")
        expect(page.locator("pre.diff")).to_contain_text("+key: abandoned-cart")
        look(page, f"{db}-builder-review")
        page.get_by_role("button", name="Publish version 1").click()
        page.wait_for_url("**/app/automations/abandoned-cart")
        expect(page.locator(".flash")).to_contain_text("is created (active)")
        assert conveyor.automation_drafts.all(acme.workspace) == []

        # the engine runs it: a cart left alone gets the first reminder after an hour
        tracked = api.post(
            "/v1/track",
            headers=acme.write,
            json={"userId": "cara", "event": "cart_updated", "properties": {"total": 40}},
        )
        assert tracked.status_code == 200, tracked.text
        deliver(conveyor)
        conveyor.clock.advance(timedelta(minutes=61))
        deliver(conveyor)
        cara = api.get("/contacts", params={"q": "cara"}).json()["items"][0]["id"]
        outbox = api.get("/outbox", params={"contact": cara}).json()["items"]
        assert [m["template"] for m in outbox] == ["cart-reminder-1"]

        # the exported definition is the example file's
        stored = api.get("/automations/abandoned-cart").json()
        assert stored["definition"] == example
        assert stored["status"] == "active"


def test_the_keyboard_moves_copies_deletes_and_undoes(conveyor, acme, chromium, database_url):
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    conveyor.automations.apply(acme.workspace, frame.example("abandoned-cart"))
    with LiveServer(create_app(conveyor)) as server:
        page = open_page(chromium)
        frame.sign_in(page, server.url, "mia@acme.example")
        page.goto(f"{server.url}/app/automations/abandoned-cart/edit")
        expect(page.get_by_role("heading", name="Edit Abandoned cart")).to_be_visible()
        expect(page.locator("#nodes li.node")).to_have_count(5)
        checked(page)
        before = yaml_view(page)

        # Tab reaches the palette; Enter adds a node and focuses it on the canvas
        frame.tab_to(page, "Add tag", presses=80)
        page.keyboard.press("Enter")
        expect(page.locator("#nodes li.node")).to_have_count(6)
        focused = page.evaluate("document.activeElement.dataset.node")
        assert focused == "add-tag-1"
        card = page.locator('#nodes li.node[data-id="add-tag-1"]')
        left = card.evaluate("e => e.offsetLeft")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Shift+ArrowRight")
        assert card.evaluate("e => e.offsetLeft") == left + 60
        page.keyboard.press("Control+c")
        page.keyboard.press("Control+v")
        expect(page.locator("#nodes li.node")).to_have_count(7)
        assert page.evaluate("document.activeElement.dataset.node") == "add-tag-2"
        page.keyboard.press("Delete")
        expect(page.locator("#nodes li.node")).to_have_count(6)
        look(page, f"{db}-builder-keyboard")
        for _ in range(4):  # paste, move ×2 (one move coalesces), add: back to the start
            page.keyboard.press("Control+z")
        page.keyboard.press("Control+z")
        expect(page.locator("#nodes li.node")).to_have_count(5)
        page.keyboard.press("Control+y")
        expect(page.locator("#nodes li.node")).to_have_count(6)
        page.keyboard.press("Control+z")
        expect(page.locator("#nodes li.node")).to_have_count(5)
        checked(page)
        assert yaml_view(page) == before

        # a viewer may not open the builder
        viewer = frame_page(chromium)
        frame.sign_in(viewer, server.url, "vic@acme.example")
        viewer.goto(f"{server.url}/app/builder")
        expect(viewer.get_by_role("heading", name="Not allowed")).to_be_visible()


def trigger(page: Page, kind: str, field: str, value: str) -> None:
    form = inspector(page)
    form.get_by_role("button", name="Add trigger").click()
    form.get_by_label("Trigger 1", exact=True).select_option(label=kind)
    form.get_by_label(field, exact=True).fill(value)


def build_welcome_series(page: Page) -> None:
    form = inspector(page)
    form.get_by_label("Key", exact=True).fill("welcome-series")
    form.get_by_label("Name", exact=True).fill("Welcome series")
    trigger(page, "list subscribed", "List subscribed", "newsletter")
    for node_id, kind, field, value in [
        ("welcome", "Send email", "Template", "welcome-1"),
        ("first-week", "Wait", "For", "7 days"),
        ("tips", "Send email", "Template", "welcome-2"),
        ("second-week", "Wait", "For", "7 days"),
        ("offer", "Send email", "Template", "welcome-3"),
    ]:
        add(page, kind, node_id).get_by_label(field, exact=True).fill(value)


def build_first_purchase_or_loyal(page: Page) -> None:
    form = inspector(page)
    form.get_by_label("Key", exact=True).fill("first-purchase-or-loyal")
    form.get_by_label("Name", exact=True).fill("First purchase or loyal")
    trigger(page, "Custom event", "Event", "order_completed")
    form.get_by_label("Repeat", exact=True).select_option(label="every time")
    node = add(page, "If", "first-order")
    node.get_by_label("Condition", exact=True).select_option(label="event")
    node.get_by_label("Event", exact=True).fill("order_completed")
    node.get_by_label("Count", exact=True).select_option(label="eq")
    node.get_by_label("Count: eq", exact=True).fill("1")
    node = add(page, "Send email", "promo")
    node.get_by_label("Template", exact=True).fill("first-order-promo")
    node.get_by_label("Next", exact=True).select_option("end")
    add(page, "Subscribe", "loyal").get_by_label("List", exact=True).fill("loyal-customers")
    node = open_node(page, "first-order")
    node.get_by_label("Then", exact=True).select_option("promo")
    page.get_by_role("button", name="Connect else of first-order").click()
    page.locator('#nodes button.node-main[data-node="loyal"]').click()


def build_open_or_remind(page: Page) -> None:
    form = inspector(page)
    form.get_by_label("Key", exact=True).fill("open-or-remind")
    form.get_by_label("Name", exact=True).fill("Open or remind")
    trigger(page, "tag added", "Tag added", "offer-2026")
    form.get_by_label("Repeat", exact=True).select_option("")  # no entry rules: the defaults
    add(page, "Send email", "offer").get_by_label("Template", exact=True).fill("offer")
    node = add(page, "Wait until", "wait-for-open")
    node.get_by_label("Condition", exact=True).select_option(label="message")
    node.get_by_label("Message", exact=True).select_option(label="opened")
    node.get_by_label("Template", exact=True).fill("offer")
    node.get_by_label("Within", exact=True).select_option(label="since entry")
    node.get_by_label("Timeout", exact=True).fill("3 days")
    # the form shows the kind of each value: "since entry" stays chosen after a redraw
    node = open_node(page, "offer")
    node = open_node(page, "wait-for-open")
    expect(node.get_by_label("Within", exact=True).locator("option:checked")).to_have_text(
        "since entry"
    )
    node = add(page, "Send email", "follow-up")
    node.get_by_label("Template", exact=True).fill("offer-follow-up")
    node.get_by_label("Next", exact=True).select_option("end")
    add(page, "Send email", "reminder").get_by_label("Template", exact=True).fill("offer-reminder")
    node = open_node(page, "wait-for-open")
    node.get_by_label("On timeout", exact=True).select_option("reminder")
    node.get_by_label("Next", exact=True).select_option("follow-up")


def enter_welcome(api: httpx.Client, acme: Tenant) -> int:
    return frame.subscribe(api, "ada@example.com")


def enter_first_purchase(api: httpx.Client, acme: Tenant) -> int:
    made = api.post("/contacts", json={"email": "bo@example.com", "external_id": "bo"})
    assert made.status_code == 201, made.text
    tracked = api.post(
        "/v1/track",
        headers=acme.write,
        json={"userId": "bo", "event": "order_completed", "properties": {"total": 20}},
    )
    assert tracked.status_code == 200, tracked.text
    return made.json()["id"]


def enter_open_or_remind(api: httpx.Client, acme: Tenant) -> int:
    made = api.post("/contacts", json={"email": "cy@example.com", "tags": ["offer-2026"]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


@pytest.mark.parametrize(
    ("name", "build", "enter", "first"),
    [
        ("welcome-series", build_welcome_series, enter_welcome, "welcome-1"),
        (
            "first-purchase-or-loyal",
            build_first_purchase_or_loyal,
            enter_first_purchase,
            "first-order-promo",
        ),
        ("open-or-remind", build_open_or_remind, enter_open_or_remind, "offer"),
    ],
)
def test_more_scenarios_built_on_the_canvas_run(
    conveyor, acme, chromium, database_url, name, build, enter, first
):
    """Scenarios 1, 3 and 6, each from an empty automation by the palette and the forms."""
    db = "pg" if database_url.startswith("postgresql") else "sqlite"
    example = frame.example(name)
    with (
        LiveServer(create_app(conveyor)) as server,
        httpx.Client(base_url=server.url, headers=acme.admin, timeout=10) as api,
    ):
        page = open_page(chromium)
        frame.sign_in(page, server.url, "mia@acme.example")
        page.get_by_role("link", name="New automation").click()
        page.wait_for_url("**/app/builder")
        build(page)
        checked(page)
        expect(page.locator("#problems")).to_contain_text("No problem found")
        same(yaml_view(page), example)
        look(page, f"{db}-builder-{name}")
        page.get_by_role("button", name="Review and publish").click()
        page.wait_for_url("**/app/builder/review?draft=*")
        page.get_by_role("button", name="Publish version 1").click()
        page.wait_for_url(f"**/app/automations/{name}")
        stored = api.get(f"/automations/{name}").json()
        assert (stored["definition"], stored["status"]) == (example, "active")

        contact = enter(api, acme)
        deliver(conveyor)
        outbox = api.get("/outbox", params={"contact": contact}).json()["items"]
        assert [m["template"] for m in outbox] == [first]
