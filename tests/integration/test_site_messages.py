"""Site messages over HTTP, as the website snippet asks for them: an automation's
send_site_message node fills the outbox, delivery renders it, the visitor's page lists it and
reports it shown, clicked or dismissed; other visitors and workspaces never see it; identity
verification guards requests by userId."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from conveyor.services.channel_config import site_user_hash
from tests.integration.conftest import make_tenant

TEMPLATE = {
    "key": "trial-tip",
    "channel": "site_message",
    "content": {
        "title": "Hi {{ contact.first_name | default: 'there' }}",
        "body": "Your trial is ready. <b>Invite</b> your team.",
        "button": "Invite now",
        "url": "https://app.example/invite",
    },
}
AUTOMATION = {
    "key": "trial-tip",
    "triggers": [{"event": "trial_started"}],
    "entry": {"repeat": "every_time"},
    "nodes": [{"id": "tip", "type": "send_site_message", "template": "trial-tip"}],
}


def setup_automation(client, tenant):
    r = client.post("/templates", headers=tenant.admin, json=TEMPLATE)
    assert r.status_code == 200, r.text
    r = client.post("/automations", headers=tenant.admin, json=AUTOMATION)
    assert r.status_code == 200, r.text
    r = client.patch("/automations/trial-tip", headers=tenant.admin, json={"status": "active"})
    assert r.status_code == 200, r.text


def start_trial(client, conveyor, tenant, **who):
    r = client.post("/v1/track", headers=tenant.write, json={**who, "event": "trial_started"})
    assert r.status_code == 200, r.text
    conveyor.engine.run_until_idle()
    conveyor.delivery.run_until_idle()


def listed(client, tenant, **params):
    r = client.get("/v1/site-messages", headers=tenant.write, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def events(client, tenant, external_id, name):
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": external_id}).json()["id"]
    return client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                      params={"name": name}).json()["items"]


@pytest.fixture
def trial(client, conveyor, tenant):
    """u-1 (Ada) started a trial: one site message waits for her."""
    setup_automation(client, tenant)
    r = client.post("/v1/identify", headers=tenant.write,
                    json={"userId": "u-1", "anonymousId": "anon-1",
                          "traits": {"firstName": "Ada"}})
    assert r.status_code == 200, r.text
    start_trial(client, conveyor, tenant, userId="u-1")
    items = listed(client, tenant, userId="u-1")
    assert len(items) == 1
    return items[0]


def test_the_visitor_sees_the_message_and_it_stops_once_dismissed(client, conveyor, tenant, trial):
    assert trial == {
        "id": trial["id"],
        "title": "Hi Ada",
        "body": "Your trial is ready. <b>Invite</b> your team.",  # text, shown as text
        "button": "Invite now",
        "url": "https://app.example/invite",
    }
    # The anonymous id the user was identified with reaches the same contact.
    assert [m["id"] for m in listed(client, tenant, anonymousId="anon-1")] == [trial["id"]]

    basic = "Basic " + base64.b64encode(f"{tenant.write_key}:".encode()).decode()
    r = client.post(f"/v1/site-messages/{trial['id']}/shown",
                    headers={"Authorization": basic}, json={"userId": "u-1"})
    assert r.status_code == 204, r.text
    # The snippet's form: text/plain, the write key in the body, no Authorization header.
    r = client.post(f"/v1/site-messages/{trial['id']}/shown",
                    content=f'{{"anonymousId":"anon-1","writeKey":"{tenant.write_key}"}}',
                    headers={"Content-Type": "text/plain"})
    assert r.status_code == 204, r.text
    shown = events(client, tenant, "u-1", "site_message.shown")
    assert len(shown) == 2
    assert shown[0]["properties"]["message"] == trial["id"]
    assert shown[0]["properties"]["automation"] == "trial-tip"
    assert listed(client, tenant, userId="u-1"), "shown is still offered"

    r = client.post(f"/v1/site-messages/{trial['id']}/dismissed", headers=tenant.write,
                    json={"userId": "u-1"})
    assert r.status_code == 204
    assert len(events(client, tenant, "u-1", "site_message.dismissed")) == 1
    assert listed(client, tenant, userId="u-1") == []


def test_clicked_is_recorded_and_no_longer_offered(client, conveyor, tenant, trial):
    r = client.post(f"/v1/site-messages/{trial['id']}/clicked", headers=tenant.write,
                    json={"userId": "u-1"})
    assert r.status_code == 204, r.text
    clicked = events(client, tenant, "u-1", "site_message.clicked")
    assert [e["properties"]["message"] for e in clicked] == [trial["id"]]
    assert listed(client, tenant, userId="u-1") == []


def test_other_visitors_and_workspaces_get_nothing(client, conveyor, tenant, trial):
    # Unknown visitors have no messages (not a 404); a known one without messages neither.
    assert listed(client, tenant, userId="nobody") == []
    assert listed(client, tenant, anonymousId="never-seen") == []
    client.post("/v1/identify", headers=tenant.write, json={"userId": "u-2"})
    assert listed(client, tenant, userId="u-2") == []

    for body in ({"userId": "u-2"}, {"userId": "nobody"}, {"anonymousId": "never-seen"}):
        r = client.post(f"/v1/site-messages/{trial['id']}/clicked", headers=tenant.write,
                        json=body)
        assert r.status_code == 404, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post(f"/v1/site-messages/{trial['id'] + 1000}/shown", headers=tenant.write,
                    json={"userId": "u-1"})
    assert r.status_code == 404

    # Another workspace with a user of the same id: its key reaches only its own contacts.
    globex = make_tenant(conveyor, "globex")
    client.post("/v1/identify", headers=globex.write, json={"userId": "u-1"})
    assert listed(client, globex, userId="u-1") == []
    r = client.post(f"/v1/site-messages/{trial['id']}/clicked", headers=globex.write,
                    json={"userId": "u-1"})
    assert r.status_code == 404
    assert events(client, tenant, "u-1", "site_message.clicked") == []
    assert len(listed(client, tenant, userId="u-1")) == 1


def test_bad_requests_are_problems(client, tenant, trial):
    r = client.get("/v1/site-messages", params={"userId": "u-1"})
    assert r.status_code == 401
    r = client.get("/v1/site-messages", headers=tenant.write)
    assert r.status_code == 422
    assert r.json()["field"] == "userId"
    r = client.post(f"/v1/site-messages/{trial['id']}/opened", headers=tenant.write,
                    json={"userId": "u-1"})
    assert r.status_code == 422
    r = client.post(f"/v1/site-messages/{trial['id']}/shown", headers=tenant.write,
                    content="{not json")
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")


def test_identity_verification(client, conveyor, tenant, trial):
    conveyor.workspaces.update_settings(tenant.workspace, {"site_messages_verify": True})
    channels = client.get("/channels", headers=tenant.admin).json()
    secret = channels["site_messages"]["identity_secret"]
    assert channels["site_messages"]["verify"] is True
    workspace = conveyor.workspaces.get("acme")
    good = site_user_hash(workspace, "u-1")
    assert good == hmac.new(secret.encode(), b"u-1", hashlib.sha256).hexdigest()

    for params in ({"userId": "u-1"}, {"userId": "u-1", "userHash": "0" * 64},
                   {"userId": "u-1", "userHash": site_user_hash(workspace, "u-2")},
                   {"userId": "u-1", "userHash": "é"}):
        r = client.get("/v1/site-messages", headers=tenant.write, params=params)
        assert r.status_code == 403, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = client.post(f"/v1/site-messages/{trial['id']}/clicked", headers=tenant.write,
                    json={"userId": "u-1"})
    assert r.status_code == 403
    assert events(client, tenant, "u-1", "site_message.clicked") == []

    # Linking one's own anonymous id to the user (identify names anyone's userId) gains nothing.
    r = client.post("/v1/identify", headers=tenant.write,
                    json={"userId": "u-1", "anonymousId": "attacker"})
    assert r.status_code == 200
    r = client.get("/v1/site-messages", headers=tenant.write, params={"anonymousId": "attacker"})
    assert r.status_code == 403

    assert [m["id"] for m in listed(client, tenant, userId="u-1", userHash=good)] == [trial["id"]]
    r = client.post(f"/v1/site-messages/{trial['id']}/clicked", headers=tenant.write,
                    json={"userId": "u-1", "userHash": good.upper()})
    assert r.status_code == 204

    # Anonymous visitors need no hash while they are anonymous.
    start_trial(client, conveyor, tenant, anonymousId="visitor-7")
    items = listed(client, tenant, anonymousId="visitor-7")
    assert [m["title"] for m in items] == ["Hi there"]
    r = client.post(f"/v1/site-messages/{items[0]['id']}/dismissed", headers=tenant.write,
                    json={"anonymousId": "visitor-7"})
    assert r.status_code == 204


def test_the_snippet_is_served_as_cacheable_javascript(client):
    r = client.get("/sdk/conveyor.js")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "max-age" in r.headers["cache-control"]
    assert "conveyor.identify" in r.text and "textContent" in r.text
    again = client.get("/sdk/conveyor.js", headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
