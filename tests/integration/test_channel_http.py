"""Channels over HTTP end to end, with real local peers: scenario 12 (a signed webhook to a CRM
that is down for a while, received exactly once when it is back), SMS through a Twilio-shaped
server with replies and STOP, and team notifications over SMTP."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml

from conveyor.domain.signatures import verify
from tests.support.flows import activate, settle
from tests.support.http import Peer
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def peer():
    found = Peer().start()
    yield found
    found.stop()






def load_templates(client, tenant, *keys):
    for path in (EXAMPLES / "templates").glob("*.yaml"):
        for template in yaml.safe_load(path.read_text()):
            if template["key"] in keys:
                assert client.post("/templates", headers=tenant.admin,
                                   json=template).status_code == 200


def test_scenario_12_webhook_to_a_crm_that_is_down_arrives_once_signed(
    client, tenant, conveyor, clock, peer
):
    conveyor.settings.webhook_allow = "127.0.0.1/32"  # the test CRM lives on loopback
    load_templates(client, tenant, "crm-lead")
    definition = yaml.safe_load((EXAMPLES / "automations" / "crm-webhook.yaml").read_text())
    definition["nodes"][0]["url"] = f"{peer.url}/api/leads"
    client.post("/fields", headers=tenant.admin, json={"key": "stage", "type": "text"})
    activate(client, tenant, definition)
    peer.stop()  # the CRM is down
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "lead@example.com", "first_name": "Lee", "score": 55,
        "fields": {"stage": "Lead"}}).json()["id"]
    client.patch(f"/contacts/{cid}", headers=tenant.admin, json={"fields": {"stage": "Qualified"}})
    settle(conveyor)
    for _ in range(6):  # down for about an hour: retried with backoff, never given up
        clock.advance(timedelta(minutes=10))
        settle(conveyor)
    [message] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert message["status"] == "pending" and message["attempts"] >= 3
    peer.start()  # back
    clock.advance(timedelta(hours=2))
    settle(conveyor)
    clock.advance(timedelta(hours=6))
    settle(conveyor)
    [(path, headers, body)] = peer.requests  # exactly once
    assert path == "/api/leads"
    assert json.loads(body) == {"email": "lead@example.com", "name": "Lee", "score": 55,
                                "stage": "Qualified"}
    assert headers["X-Source"] == "conveyor"
    assert headers["Idempotency-Key"] == message["idempotency_key"]
    secret = client.get("/channels", headers=tenant.admin).json()["webhook"]["signing_secret"]
    now = int(clock.now().timestamp())
    assert verify(secret.encode(), headers["Conveyor-Signature"], body, now, tolerance=10**6)
    assert not verify(secret.encode(), headers["Conveyor-Signature"], body + b" ", now, 10**6)
    [sent] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert sent["status"] == "sent"
    steps = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"]
    outcomes = [s["outcome"] for s in reversed(steps)]
    assert outcomes[0] == "queued" and outcomes[-1] == "sent" and "retrying" in outcomes


def test_webhooks_refuse_private_addresses_unless_allowed(client, tenant, conveyor, peer):
    conveyor.settings.webhook_allow = ""  # the default: no internal address allowed
    activate(client, tenant, {
        "key": "hook", "triggers": [{"tag_added": "go"}],
        "nodes": [{"id": "call", "type": "webhook", "url": f"{peer.url}/x"}]})
    cid = client.post("/contacts", headers=tenant.admin,
                      json={"email": "a@example.com", "tags": ["go"]}).json()["id"]
    settle(conveyor)
    [message] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert message["status"] == "failed" and "127.0.0.1" in message["error"]
    assert peer.requests == []
    [failed] = client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                          params={"name": "webhook.failed"}).json()["items"]
    assert failed["properties"]["automation"] == "hook"


def test_sms_is_sent_and_stop_replies_suppress_the_number(client, server, tenant, conveyor):
    twilio = Peer(answer=(201, b'{"sid": "SM0001", "status": "queued", "num_segments": "1"}'))
    twilio.start()
    try:
        r = client.put("/channels/sms", headers=tenant.admin, json={
            "account_sid": "AC123", "auth_token": "secret-token", "from": "+15005550006",
            "base_url": twilio.url})
        assert r.status_code == 200, r.text
        assert r.json()["sms"]["auth_token"] == "•••oken"  # write-only secret
        client.post("/templates", headers=tenant.admin, json={
            "key": "sms-hello", "channel": "sms",
            "content": {"body": "Hi {{ contact.first_name }}, 20% off today. Reply STOP to opt out"}})
        activate(client, tenant, {
            "key": "texts", "triggers": [{"tag_added": "text-me"}], "entry": {"repeat": "every_time"},
            "nodes": [{"id": "hello", "type": "send_sms", "template": "sms-hello"}]})
        cid = client.post("/contacts", headers=tenant.admin, json={
            "first_name": "Zoe", "phone": "+48600100200", "tags": ["text-me"]}).json()["id"]
        settle(conveyor)
        [(path, headers, body)] = twilio.requests
        assert path == "/2010-04-01/Accounts/AC123/Messages.json"
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        assert form["To"] == "+48600100200" and form["From"] == "+15005550006"
        assert form["Body"].startswith("Hi Zoe, 20% off today.")
        [sent] = client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                            params={"name": "sms.sent"}).json()["items"]
        assert sent["properties"]["provider_id"] == "SM0001"

        # The contact replies STOP (unsigned: refused; signed like Twilio: taken).
        inbound = client.get("/channels", headers=tenant.admin).json()["inbound"]["sms_replies"]
        path = "/" + inbound.split("/", 3)[3]
        stop = {"From": "+48600100200", "To": "+15005550006", "Body": "Stop", "MessageSid": "SM9"}
        assert client.post(path, data=stop).status_code == 404
        from conveyor.channels.sms import twilio_signature

        signature = twilio_signature("secret-token", inbound, stop)
        r = client.post(path, data=stop, headers={"X-Twilio-Signature": signature})
        assert r.status_code == 200, r.text
        [replied] = client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                               params={"name": "sms.replied"}).json()["items"]
        assert replied["properties"]["keyword"] == "stop"
        client.delete(f"/contacts/{cid}/tags/text-me", headers=tenant.admin)
        client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["text-me"]})
        settle(conveyor)
        assert len(twilio.requests) == 1  # suppressed: no second SMS
        messages = client.get("/messages", headers=tenant.admin).json()["items"]
        assert [m["status"] for m in messages] == ["sent", "skipped"]
        assert messages[1]["error"] == "suppressed: unsubscribed"
    finally:
        twilio.stop()


def test_team_notification_reaches_up_to_five_addresses_with_the_contacts_details(
    client, tenant, conveyor
):
    smtp = SmtpSink().start()
    try:
        client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Conveyor <robot@acme-shop.com>", "smtp_url": smtp.url})
        activate(client, tenant, {
            "key": "tell-sales", "triggers": [{"event": "order_completed",
                                               "where": [{"property": "total", "op": "gt",
                                                          "value": 1000}]}],
            "entry": {"repeat": "every_time"},
            "nodes": [{"id": "notify", "type": "notify_team",
                       "to": ["sales@acme-shop.com", "boss@acme-shop.com"]}]})
        client.post("/v1/identify", headers=tenant.write, json={
            "userId": "big", "traits": {"email": "big@example.com", "firstName": "Bea"}})
        client.post("/v1/track", headers=tenant.write, json={
            "userId": "big", "event": "order_completed", "properties": {"total": 1500}})
        client.post("/v1/track", headers=tenant.write, json={
            "userId": "big", "event": "order_completed", "properties": {"total": 15}})
        settle(conveyor)
        [note] = smtp.messages
        assert sorted(note.recipients) == ["boss@acme-shop.com", "sales@acme-shop.com"]
        assert note.message["Subject"] == "tell-sales: Bea"
        text = note.part("plain")
        assert "email: big@example.com" in text and "/timeline" in text
        assert note.message["Reply-To"] == "big@example.com"
        assert note.message["List-Unsubscribe"] is None  # internal mail: no unsubscribe
    finally:
        smtp.stop()
