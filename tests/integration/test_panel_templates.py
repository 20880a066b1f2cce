"""The panel's template editor and "Test a contact" over real HTTP on both databases: the live
preview's data and its framed document (a CSP that runs nothing), errors at line and column,
a refused save that stores nothing, versions and their difference, a test send that arrives at
a real SMTP server (aiosmtpd), limited and logged, a viewer refused, and scenario 4 walked
through for one contact without writing anything."""

from __future__ import annotations

import html
from pathlib import Path

import httpx
import pytest
import yaml

from conveyor.bootstrap import Conveyor
from conveyor.services.template_editor import TEST_SENDS, TEST_SENT
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.integration.test_panel import browser, form_token, sign_in, user
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GREETING = {
    "subject": "Hello {{ contact.first_name | default: 'friend' }}",
    "html": '<html><body><p style="color:#333">Hi {{ contact.first_name }}!</p>'
    '<p><a href="https://shop.example/">Shop</a></p></body></html>',
}


def draft(token: str, **parts: str) -> dict[str, str]:
    form = {"csrf": token, "channel": "email", "format": "html", "name": "Greeting"}
    form |= {"subject": GREETING["subject"], "body": GREETING["html"], "text": ""}
    return form | parts


@pytest.fixture
def acme(conveyor: Conveyor, tenant: Tenant) -> Tenant:
    conveyor.templates.save(tenant.workspace, "greeting", "email", GREETING, "Greeting")
    user(conveyor, tenant, "mia@acme.example", "marketer")
    user(conveyor, tenant, "vic@acme.example", "viewer")
    return tenant


def add_contact(server: LiveServer, tenant: Tenant, email: str, first: str) -> int:
    with httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api:
        made = api.post("/contacts", json={"email": email, "first_name": first})
        assert made.status_code == 201, made.text
        return made.json()["id"]


def test_preview_renders_the_draft_for_a_contact_in_a_frame_that_runs_nothing(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    cid = add_contact(server, acme, "ada@example.com", "Ada")
    with browser(server) as client:
        sign_in(client, "vic@acme.example")  # a viewer may look, and try a change
        page = client.get("/app/templates/greeting", params={"contact": "ada@example.com"})
        assert page.status_code == 200
        assert "Hello Ada" in page.text and "Hi Ada!" in page.text  # subject and text part
        token = form_token(page.text)
        changed = draft(token, subject="Welcome back {{ contact.first_name }}", contact=str(cid))
        data = client.post("/app/templates/render.json", data=changed).json()
        assert data["ok"] and data["problems"] == []
        assert data["subject"] == "Welcome back Ada"
        assert "Hi Ada!" in data["text"] and "https://shop.example/" in data["text"]
        assert data["contact"] == {"id": cid, "email": "ada@example.com"}

        frame = client.post("/app/templates/frame", data=changed | {"contact": "ada@example.com"})
        assert frame.status_code == 200 and "Hi Ada!" in frame.text
        assert "color:#333" in frame.text.replace(" ", "")  # the email's own styles stay
        assert "/t/c/" not in frame.text  # links are not tracked in a preview
        csp = frame.headers["content-security-policy"]
        assert csp.startswith("sandbox;") and "script-src" not in csp
        assert "default-src 'none'" in csp and "frame-ancestors 'self'" in csp
        assert frame.headers["x-frame-options"] == "SAMEORIGIN"
        # the panel's own pages are never framed; the saved version's frame is the same kind
        assert page.headers["x-frame-options"] == "DENY"
        saved = client.get("/app/templates/greeting/frame", params={"contact": str(cid)})
        assert "Hi Ada!" in saved.text and saved.headers["content-security-policy"] == csp

        # the trigger event's properties, as the cart reminder uses them
        items = "{% for item in event.items %}{{ item.name }} x{{ item.qty }}; {% endfor %}"
        cart = draft(
            token, text=items, contact=str(cid), event='{"items": [{"name": "Mug", "qty": 2}]}'
        )
        assert client.post("/app/templates/render.json", data=cart).json()["text"] == "Mug x2; "
        bad = client.post("/app/templates/render.json", data=cart | {"event": "{items"}).json()
        assert not bad["ok"] and bad["event_problem"].startswith("not JSON")
        unknown = client.post("/app/templates/render.json", data=draft(token, contact="nobody@x.y"))
        assert "nobody@x.y" in unknown.json()["contact_problem"]
        # without its CSRF token the preview is refused
        assert client.post("/app/templates/render.json", data={"subject": "x"}).status_code == 403
    assert conveyor.templates.get(acme.workspace, "greeting").version == 1  # nothing saved


def test_errors_come_with_line_and_column_and_an_invalid_save_stores_nothing(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    body = "<html><body>\n<p>Hi {{ contact.first_name | shout }}</p>\n</body></html>"
    mjml = (
        "<mjml>\n  <mj-body>\n    <mj-section><mj-column>\n"
        "      <mj-text>Hi</mj-text>\n    </mj-column>\n  </mj-body>\n</mjml>"
    )
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        token = form_token(client.get("/app/templates/greeting").text)
        data = client.post(
            "/app/templates/render.json",
            data=draft(token, body=body, subject="Hi {% if x %}", text="a\n\n{{ 'x' | nope }}"),
        ).json()
        assert not data["ok"]
        found = {p["input"]: (p["line"], p["column"], p["message"]) for p in data["problems"]}
        assert found["body"] == (2, 31, "unknown filter 'shout'")
        assert found["text"][:2] == (3, 10) and "nope" in found["text"][2]
        assert found["subject"][0] == 1 and "endif" in found["subject"][2]

        bad_mjml = client.post(
            "/app/templates/render.json", data=draft(token, format="mjml", body=mjml)
        ).json()
        (problem,) = bad_mjml["problems"]
        assert (problem["part"], problem["line"], problem["column"]) == ("mjml", 6, 3)
        assert "</mj-body> closes <mj-section>" in problem["message"]

        refused = client.post("/app/templates/greeting", data=draft(token, body=body))
        assert refused.status_code == 422
        assert "Nothing was stored" in refused.text
        assert 'data-line="2" data-column="31"' in refused.text
        assert "unknown filter &#39;shout&#39;" in refused.text
        assert html.escape(body.splitlines()[1]) in refused.text  # the draft is kept
    info = conveyor.templates.get(acme.workspace, "greeting")
    assert info.version == 1 and info.content == GREETING


def test_save_adds_a_version_and_the_versions_page_shows_the_difference(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        token = form_token(client.get("/app/templates/greeting").text)
        changed = GREETING["html"].replace("Hi {{", "Welcome {{")
        saved = client.post(
            "/app/templates/greeting",
            data=draft(token, body=changed, text="Welcome {{ contact.first_name }}"),
            follow_redirects=True,
        )
        assert saved.status_code == 200 and "Saved as version 2." in saved.text
        again = client.post(
            "/app/templates/greeting",
            data=draft(token, body=changed, text="Welcome {{ contact.first_name }}"),
            follow_redirects=True,
        )
        assert "Nothing changed: still version 2." in again.text
        diff = client.get("/app/templates/greeting/versions", params={"a": 1, "b": 2})
        assert diff.status_code == 200
        assert '<span class="removed">-<html><body><p style' not in diff.text  # escaped
        assert '<span class="removed">-&lt;html&gt;&lt;body&gt;&lt;p style=' in diff.text
        assert '<span class="added">+&lt;html&gt;&lt;body&gt;&lt;p style=' in diff.text
        assert '<span class="added">+## text</span>' in diff.text
        # a new template from the panel: refused while invalid, then created
        page = client.get("/app/templates/new")
        new = {k: v for k, v in draft(token, subject="").items()} | {"key": "second"}
        refused = client.post("/app/templates/new", data=new)
        assert refused.status_code == 422 and "needs &#39;subject&#39;" in refused.text
        taken = client.post("/app/templates/new", data=draft(token) | {"key": "greeting"})
        assert taken.status_code == 422 and "exists already" in taken.text
        made = client.post(
            "/app/templates/new", data=draft(form_token(page.text)) | {"key": "second"}
        )
        assert made.status_code == 303 and made.headers["location"] == "/app/templates/second"
    versions = conveyor.templates.versions(acme.workspace, "greeting")
    assert [v["version"] for v in versions] == [1, 2]
    assert conveyor.templates.get(acme.workspace, "second").version == 1


def test_a_test_send_arrives_is_limited_per_member_and_logged(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    sink = SmtpSink().start()
    try:
        conveyor.channels.configure(
            acme.workspace, "email", {"from": "Acme <news@acme.example>", "smtp_url": sink.url}
        )
        cid = add_contact(server, acme, "ada@example.com", "Ada")
        with browser(server) as client:
            sign_in(client, "mia@acme.example")
            token = form_token(client.get("/app/templates/greeting").text)
            unsaved = GREETING["html"].replace("Hi {{", "Test of {{")
            sent = client.post(
                "/app/templates/greeting/test",
                data=draft(token, body=unsaved, contact=str(cid), to="qa@acme.example"),
            )
            assert sent.status_code == 200 and "Test sent to qa@acme.example" in sent.text
            (message,) = sink.to("qa@acme.example")
            assert message.message["Subject"] == "[Test] Hello Ada"
            assert "Test of Ada!" in message.part("html") and "Test of Ada!" in message.part(
                "plain"
            )
            assert "List-Unsubscribe" not in message.message
            bad = client.post(
                "/app/templates/greeting/test", data=draft(token, to="not-an-address")
            )
            assert bad.status_code == 422
            assert (
                '<p id="err-to" class="field-error" data-error-for="to">an email address'
                in bad.text
            )
            assert 'id="err-body" class="field-error" data-error-for="body" hidden' in bad.text
            for _ in range(int(TEST_SENDS[0]) - 1):
                client.post("/app/templates/greeting/test", data=draft(token, to="qa@acme.example"))
            limited = client.post(
                "/app/templates/greeting/test", data=draft(token, to="qa@acme.example")
            )
            assert limited.status_code == 429 and "too many test sends" in limited.text
        assert len(sink.to("qa@acme.example")) == TEST_SENDS[0]
        logged = conveyor.template_editor.test_sends(acme.workspace, "greeting")
        assert len(logged) == TEST_SENDS[0]
        assert logged[-1]["to"] == "qa@acme.example" and logged[-1]["by"] == "mia@acme.example"
        assert logged[-1]["rendered_for"] == cid and logged[-1]["outcome"] == "sent"
        with conveyor.store.read() as tx:
            rows = tx.events.page(acme.workspace.id, name=TEST_SENT, limit=10)
        assert all(r.contact_id is None for r in rows)  # no contact's timeline, no trigger
        # the saved template did not change
        assert conveyor.templates.get(acme.workspace, "greeting").content == GREETING
    finally:
        sink.stop()


def test_a_viewer_is_refused_every_change_and_other_workspaces_stay_apart(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    other = make_tenant(conveyor, "globex")
    conveyor.templates.save(other.workspace, "secret", "email", GREETING, "Globex secret")
    theirs = add_contact(server, other, "bob@globex.example", "Bob")
    with browser(server) as client:
        sign_in(client, "vic@acme.example")
        page = client.get("/app/templates")
        assert page.status_code == 200 and "Greeting" in page.text
        assert "Globex secret" not in page.text and "New email template" not in page.text
        editor = client.get("/app/templates/greeting")
        assert ">Save<" not in editor.text and "Send test" not in editor.text
        token = form_token(editor.text)
        changed = draft(token, body="<p>changed</p>", to="vic@acme.example")
        for path in ("/app/templates/greeting", "/app/templates/greeting/test"):
            assert client.post(path, data=changed).status_code == 403, path
        assert client.post("/app/templates/new", data=changed | {"key": "x"}).status_code == 403
        assert client.get("/app/templates/new").status_code == 403
        assert client.get("/app/templates/secret").status_code == 404
        assert client.get("/app/templates/secret/frame").status_code == 404
        assert client.get("/app/templates/secret/versions").status_code == 404
        # another workspace's contact is not found, by id or by email
        for who in (str(theirs), "bob@globex.example"):
            seen = client.post("/app/templates/render.json", data=draft(token, contact=who))
            assert "Bob" not in seen.text and seen.json()["contact_problem"], who
            framed = client.post("/app/templates/frame", data=draft(token, contact=who))
            assert "Bob" not in framed.text
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        token = form_token(client.get("/app/templates").text)
        assert client.post("/app/templates/secret", data=draft(token)).status_code == 404
    assert conveyor.templates.get(acme.workspace, "greeting").version == 1
    assert conveyor.templates.get(other.workspace, "secret").version == 1


def test_try_a_contact_walks_scenario_4_without_writing(
    conveyor: Conveyor, server: LiveServer, acme: Tenant
):
    ws = acme.workspace
    for template in yaml.safe_load((EXAMPLES / "templates" / "scenarios.yaml").read_text()):
        conveyor.templates.save(ws, template["key"], template["channel"], template["content"])
    cart = yaml.safe_load((EXAMPLES / "automations" / "abandoned-cart.yaml").read_text())
    conveyor.automations.apply(ws, cart)
    conveyor.automations.set_status(ws, "abandoned-cart", "active")
    cid = add_contact(server, acme, "ada@example.com", "Ada")
    with conveyor.store.read() as tx:
        before = tx.events.latest_id()
    with browser(server) as client:
        sign_in(client, "vic@acme.example")
        graph = client.get("/app/automations/abandoned-cart")
        assert 'href="/app/automations/abandoned-cart/try"' in graph.text
        page = client.get("/app/automations/abandoned-cart/try")
        assert page.status_code == 200 and "cart_updated" in page.text
        token = form_token(page.text)
        ran = client.post(
            "/app/automations/abandoned-cart/try",
            data={
                "csrf": token,
                "contact": "ada@example.com",
                "events": "cart_updated",
                "days": "3",
            },
        )
        assert ran.status_code == 200, ran.text
        text = ran.text
        for node in ("wait-for-order", "reminder", "one-day", "second-reminder"):
            assert node in text
        assert "timeout" in text and "cart-reminder-1" in text and "+1 hour" in text
        ordered = client.post(
            "/app/automations/abandoned-cart/try",
            data={
                "csrf": token,
                "contact": str(cid),
                "events": "cart_updated\norder_completed after 30 minutes",
                "days": "3",
            },
        )
        assert "goal_reached" in ordered.text and "cart-reminder-1" not in ordered.text
        # a YAML draft instead of the live version; a YAML error points at its line
        broken = client.post(
            "/app/automations/abandoned-cart/try",
            data={"csrf": token, "contact": str(cid), "source": "yaml", "definition": "key: [x\n"},
        )
        assert broken.status_code == 422 and "line 2" in broken.text
        nobody = client.post(
            "/app/automations/abandoned-cart/try",
            data={"csrf": token, "contact": "nobody@example.com", "events": "cart_updated"},
        )
        assert nobody.status_code == 422 and "nobody@example.com" in nobody.text
    with conveyor.store.read() as tx:
        assert tx.events.latest_id() == before  # nothing written
    assert conveyor.delivery.messages(ws, contact_id=cid) == []
