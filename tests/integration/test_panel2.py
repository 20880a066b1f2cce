"""The panel's segments, messages, CRM and settings pages over real HTTP on both databases:
each change refused to a viewer (403 and nothing changed), nothing of another workspace seen
or touched, and no input answered with a 5xx."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from conveyor.bootstrap import Conveyor
from conveyor.services.contacts import ContactChange
from conveyor.services.crm.writer import DealDraft
from tests.integration.conftest import LiveServer, Tenant, make_tenant
from tests.integration.test_panel import browser, form_token, sign_in, user
from tests.support.flows import settle
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def dead_message(conveyor: Conveyor, server: LiveServer, tenant: Tenant, email: str) -> int:
    """A welcome email that died against an SMTP server that never answered."""
    ws = tenant.workspace
    with httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api:
        sink = SmtpSink()  # never started
        api.put("/channels/email", json={"from": "A <news@a.example>", "smtp_url": sink.url})
        for path in sorted((EXAMPLES / "templates").glob("*.yaml")):
            for template in yaml.safe_load(path.read_text()):
                api.post("/templates", json=template)
        if "newsletter" not in [row.key for row in conveyor.catalog.lists(ws)]:
            conveyor.catalog.create_list(ws, "newsletter")
        welcome = yaml.safe_load((EXAMPLES / "automations" / "welcome-series.yaml").read_text())
        conveyor.automations.apply(ws, welcome)
        conveyor.automations.set_status(ws, "welcome-series", "active")
        cid = api.post("/contacts", json={"email": email}).json()["id"]
        api.put(f"/contacts/{cid}/lists/newsletter", json={"status": "subscribed"})
    for _ in range(40):
        settle(conveyor)
        rows = conveyor.delivery.messages(ws, contact_id=cid)
        if rows and rows[0].status == "dead":
            return rows[0].id
        conveyor.clock.advance(timedelta(hours=12))  # type: ignore[attr-defined]
    raise AssertionError("the message never died")


@pytest.fixture
def other(conveyor: Conveyor) -> Tenant:
    return make_tenant(conveyor, "globex")


def test_messages_retry_is_refused_to_a_viewer_and_across_workspaces(
    conveyor: Conveyor, server, tenant, other
):
    mine = dead_message(conveyor, server, tenant, "ada@example.com")
    theirs = dead_message(conveyor, server, other, "bob@example.com")
    user(conveyor, tenant, "vera@acme.example", "viewer")
    user(conveyor, tenant, "sam@acme.example", "sales")
    user(conveyor, tenant, "mia@acme.example", "marketer")
    for email in ("vera@acme.example", "sam@acme.example"):
        with browser(server) as client:
            sign_in(client, email)
            page = client.get("/app/messages")
            assert page.status_code == 200 and "ada@example.com" in page.text
            assert "bob@example.com" not in page.text
            assert "Retry" not in page.text  # no button she cannot use ...
            refused = client.post(  # ... and the server refuses the action all the same
                f"/app/messages/{mine}/retry", data={"csrf": form_token(page.text)}
            )
            assert refused.status_code == 403, email
    assert conveyor.delivery.message(tenant.workspace, mine).status == "dead"

    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        page = client.get("/app/messages?state=dead")
        token = form_token(page.text)
        assert f"Retry message {mine}" in page.text
        # another workspace's message: not found, and left dead
        elsewhere = client.post(f"/app/messages/{theirs}/retry", data={"csrf": token})
        assert elsewhere.status_code == 404
        assert conveyor.delivery.message(other.workspace, theirs).status == "dead"
        # bad input: a page, never a 5xx
        for bad in ("/app/messages?cursor=99999999999999999999", "/app/messages?cursor=x"):
            assert client.get(bad).status_code == 400
        assert client.get("/app/messages?state=nonsense").status_code == 200
        # the retry, then a second one: nothing left to retry
        done = client.post(
            f"/app/messages/{mine}/retry",
            data={"csrf": token, "back": "state=dead"},
            follow_redirects=True,
        )
        assert done.url.path == "/app/messages" and done.url.query == b"state=dead"
        assert done.status_code == 200 and "will be sent again" in done.text
        assert conveyor.delivery.message(tenant.workspace, mine).status == "pending"
        again = client.post(
            f"/app/messages/{mine}/retry", data={"csrf": token}, follow_redirects=True
        )
        assert "nothing to retry" in again.text


def test_segments_of_another_workspace_are_not_seen(conveyor: Conveyor, server, tenant, other):
    conveyor.segments.save(tenant.workspace, "vips", "VIPs", {"tag": "vip"}, create=True)
    conveyor.segments.save(other.workspace, "secret", "Globex secret", {"tag": "vip"}, create=True)
    user(conveyor, tenant, "vera@acme.example", "viewer")
    with browser(server) as client:
        sign_in(client, "vera@acme.example")
        listed = client.get("/app/segments")
        assert "VIPs" in listed.text and "Globex secret" not in listed.text
        assert client.get("/app/segments/secret").status_code == 404
        assert client.get("/app/segments/vips?cursor=%%%").status_code in (400, 422)
        assert client.get("/app/segments/vips?contact=999999999999999").status_code == 200


def test_crm_moves_refused_to_a_viewer_and_across_workspaces(
    conveyor: Conveyor, server, tenant, other
):
    pipeline = yaml.safe_load((EXAMPLES / "pipelines" / "sales.yaml").read_text())
    deals = {}
    for t in (tenant, other):
        conveyor.crm.apply_pipeline(t.workspace, pipeline)
        contact = conveyor.contacts.create(
            t.workspace, ContactChange(values={"email": "a@b.example"})
        )
        draft = DealDraft(
            {"title": f"{t.workspace.name} deal", "contact_id": contact.id, "pipeline": "sales"}
        )
        deals[t.workspace.name] = conveyor.crm.create_deal(t.workspace, draft)["id"]
    mine, theirs = deals[tenant.workspace.name], deals[other.workspace.name]
    user(conveyor, tenant, "vera@acme.example", "viewer")
    user(conveyor, tenant, "sam@acme.example", "sales")
    with browser(server) as client:
        sign_in(client, "vera@acme.example")
        page = client.get("/app/crm/sales")
        assert page.status_code == 200 and f"{tenant.workspace.name} deal" in page.text
        assert f"{other.workspace.name} deal" not in page.text
        assert ">Move<" not in page.text and "draggable" not in page.text
        refused = client.post(
            f"/app/crm/sales/deals/{mine}/stage",
            data={"csrf": form_token(page.text), "stage": "Won"},
        )
        assert refused.status_code == 403
    assert conveyor.crm.deal(tenant.workspace, mine)["stage"] == "Lead"
    with browser(server) as client:
        sign_in(client, "sam@acme.example")
        token = form_token(client.get("/app/crm/sales").text)
        elsewhere = client.post(
            f"/app/crm/sales/deals/{theirs}/stage", data={"csrf": token, "stage": "Won"}
        )
        assert elsewhere.status_code == 404
        assert conveyor.crm.deal(other.workspace, theirs)["stage"] == "Lead"
        bad = client.post(
            f"/app/crm/sales/deals/{mine}/stage",
            data={"csrf": token, "stage": "Nowhere"},
            follow_redirects=True,
        )
        assert bad.status_code == 200 and 'class="flash failed"' in bad.text
        assert conveyor.crm.deal(tenant.workspace, mine)["stage"] == "Lead"
        assert client.get("/app/crm/nope").status_code == 404
        done = client.post(
            f"/app/crm/sales/deals/{mine}/stage",
            data={"csrf": token, "stage": "Proposal"},
            follow_redirects=True,
        )
        assert "moved to Proposal" in done.text
    assert conveyor.crm.deal(tenant.workspace, mine)["stage"] == "Proposal"


def test_settings_changes_are_for_admins_of_this_workspace_only(
    conveyor: Conveyor, server, tenant, other
):
    user(conveyor, tenant, "vera@acme.example", "viewer")
    user(conveyor, tenant, "mia@acme.example", "marketer")
    user(conveyor, tenant, "ann@acme.example", "admin")
    theirs = conveyor.workspaces.create_key(other.workspace, "write", "globex site")
    posts = [
        ("/app/settings/channels/email", {"from": "x@evil.example"}),
        ("/app/settings/policy", {"policy": "repeat_within: 1 day"}),
        ("/app/settings/keys", {"kind": "admin", "name": "stolen"}),
        ("/app/settings/keys/1/revoke", {}),
        ("/app/settings/team", {"name": "E", "email": "e@evil.example", "role": "owner"}),
        ("/app/settings/team/1/role", {"role": "viewer"}),
    ]
    before = (
        conveyor.workspaces.get(tenant.workspace.name).settings,
        [(k.id, k.revoked_at) for k in conveyor.workspaces.keys(tenant.workspace)],
        conveyor.crm.members(tenant.workspace),
    )
    for email in ("vera@acme.example", "mia@acme.example"):
        with browser(server) as client:
            sign_in(client, email)
            page = client.get("/app/settings")
            assert page.status_code == 200
            assert "API keys" not in page.text and "Team" not in page.text
            assert "Save policy" not in page.text
            for path, data in posts:
                refused = client.post(path, data={**data, "csrf": form_token(page.text)})
                assert refused.status_code == 403, (email, path)
    after = (
        conveyor.workspaces.get(tenant.workspace.name).settings,
        [(k.id, k.revoked_at) for k in conveyor.workspaces.keys(tenant.workspace)],
        conveyor.crm.members(tenant.workspace),
    )
    assert after == before

    with browser(server) as client:
        sign_in(client, "ann@acme.example")
        page = client.get("/app/settings")
        assert "globex site" not in page.text
        token = form_token(page.text)
        # another workspace's key: not found, and still working
        gone = client.post(f"/app/settings/keys/{theirs.id}/revoke", data={"csrf": token})
        assert gone.status_code == 404
        assert conveyor.workspaces.keys(other.workspace)[-1].revoked_at is None
        # an admin may not make an owner, nor change their own role
        made = client.post(
            "/app/settings/team",
            data={"csrf": token, "name": "O", "email": "o@acme.example", "role": "owner"},
        )
        assert made.status_code == 422 and "only an owner" in made.text
        me = next(
            m for m in conveyor.crm.members(tenant.workspace) if m["email"] == "ann@acme.example"
        )
        mine = client.post(
            f"/app/settings/team/{me['id']}/role",
            data={"csrf": token, "role": "viewer"},
            follow_redirects=True,
        )
        assert "cannot change your own role" in mine.text
        assert client.post(
            "/app/settings/keys/999999999999999999999/revoke", data={"csrf": token}
        ).status_code in (400, 422)


def test_messages_are_paged_newest_first_without_gaps_or_repeats(
    conveyor: Conveyor, server, tenant
):
    import re

    ws = tenant.workspace
    conveyor.catalog.create_list(ws, "newsletter")
    welcome = yaml.safe_load((EXAMPLES / "automations" / "welcome-series.yaml").read_text())
    conveyor.automations.apply(ws, welcome)
    conveyor.automations.set_status(ws, "welcome-series", "active")
    with httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api:
        for n in range(55):
            cid = api.post("/contacts", json={"email": f"p{n}@example.com"}).json()["id"]
            api.put(f"/contacts/{cid}/lists/newsletter", json={"status": "subscribed"})
    conveyor.engine.run_until_idle()  # the messages are made; nothing sends them
    made = sorted((m.id for m in conveyor.delivery.messages(ws, limit=500)), reverse=True)
    assert len(made) == 55
    user(conveyor, tenant, "vera@acme.example", "viewer")
    with browser(server) as client:
        sign_in(client, "vera@acme.example")
        first = client.get("/app/messages?channel=email")
        ids = [int(i) for i in re.findall(r'data-message="(\d+)"', first.text)]
        more = re.search(r'href="\?([^"]+)" rel="next"', first.text)
        assert more, "a link to older messages"
        second = client.get("/app/messages?" + more.group(1).replace("&amp;", "&"))
        ids += [int(i) for i in re.findall(r'data-message="(\d+)"', second.text)]
        assert 'rel="next"' not in second.text
    assert ids == made


def test_reports_count_what_was_sent_and_name_a_bad_range(conveyor: Conveyor, server, tenant):
    """The reports pages over the same services as /reports: three welcome emails sent through a
    real SMTP server are counted on the overview, in its series and in the automation's funnel;
    a range that ends before it starts is a 422 naming the field."""
    ws = tenant.workspace
    user(conveyor, tenant, "mia@acme.example", "marketer")
    sink = SmtpSink().start()
    try:
        with httpx.Client(base_url=server.url, headers=tenant.admin, timeout=10) as api:
            conveyor.catalog.create_list(ws, "newsletter")
            api.put("/channels/email", json={"from": "A <news@a.example>", "smtp_url": sink.url})
            for path in sorted((EXAMPLES / "templates").glob("*.yaml")):
                for template in yaml.safe_load(path.read_text()):
                    api.post("/templates", json=template)
            welcome = yaml.safe_load((EXAMPLES / "automations" / "welcome-series.yaml").read_text())
            conveyor.automations.apply(ws, welcome)
            conveyor.automations.set_status(ws, "welcome-series", "active")
            for name in ("ada", "grace", "linus"):
                cid = api.post("/contacts", json={"email": f"{name}@example.com"}).json()["id"]
                api.put(f"/contacts/{cid}/lists/newsletter", json={"status": "subscribed"})
        settle(conveyor)
        assert len(sink.messages) == 3
    finally:
        sink.stop()
    with browser(server) as client:
        sign_in(client, "mia@acme.example")
        page = client.get("/app/reports")
        assert page.status_code == 200
        assert re.search(r'data-kpi="sent"[^>]*>\s*3\s*<', page.text), "sent: 3"
        assert "Sent: 3" in page.text  # the series' point, in the chart's title
        report = client.get("/app/reports/automations/welcome-series")
        assert report.status_code == 200 and "welcome: 3 reached" in report.text
        bad = client.get(
            "/app/reports/automations/welcome-series",
            params={"from": "2030-01-10", "to": "2030-01-01"},
        )
        assert bad.status_code == 422 and "field-error" in bad.text
        assert client.get("/app/reports", params={"from": "soon"}).status_code == 422
        assert client.get("/app/reports/automations/nothing-here").status_code == 404


def test_crm_leads_to_the_first_pipeline_or_says_there_is_none(conveyor: Conveyor, server, tenant):
    user(conveyor, tenant, "sam@acme.example", "sales")
    with browser(server) as client:
        sign_in(client, "sam@acme.example")
        empty = client.get("/app/crm")
        assert empty.status_code == 200 and "No pipeline yet" in empty.text
        pipeline = yaml.safe_load((EXAMPLES / "pipelines" / "sales.yaml").read_text())
        conveyor.crm.apply_pipeline(tenant.workspace, pipeline)
        moved = client.get("/app/crm")
        assert moved.status_code == 303 and moved.headers["location"] == "/app/crm/sales"
