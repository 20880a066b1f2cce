"""The deliverability guard end to end: complaints from Gmail recipients pause marketing email to
Gmail (not to Yahoo, and never transactional email); the held emails wait, and go out once the
provider is resumed. Real SMTP (aiosmtpd), the API over HTTP, the simulated clock, both databases."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.support.flows import activate, settle
from tests.support.smtp import SmtpSink

OFFER = {"key": "offer", "channel": "email", "content": {
    "subject": "20% off", "html": '<p><a href="https://shop.example/sale">Sale</a></p>'}}
RECEIPT = {"key": "receipt", "channel": "email", "content": {
    "subject": "Your receipt", "text": "Thanks for your order."}}
PROMO = {"key": "promo", "triggers": [{"event": "signed_up"}],
         "nodes": [{"id": "offer", "type": "send_email", "template": "offer"}]}
RECEIPTS = {"key": "receipts", "triggers": [{"event": "order_completed"}],
            "entry": {"repeat": "every_time"},
            "nodes": [{"id": "receipt", "type": "send_email", "template": "receipt",
                       "class": "transactional"}]}


@pytest.fixture
def mail(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Acme <news@acme.example>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    for template in (OFFER, RECEIPT):
        assert client.post("/templates", headers=tenant.admin, json=template).status_code == 200
    activate(client, tenant, PROMO)
    activate(client, tenant, RECEIPTS)
    yield sink
    sink.stop()


def track(client, tenant, users, event):
    calls = []
    for user, domain in users:
        calls += [{"type": "identify", "userId": user, "traits": {"email": f"{user}@{domain}"}},
                  {"type": "track", "userId": user, "event": event}]
    r = client.post("/v1/batch", headers=tenant.write, json={"batch": calls})
    assert r.status_code == 200 and not r.json()["errors"], r.text


def providers(client, tenant, path="/deliverability", method="GET"):
    r = client.request(method, path, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return {p["provider"]: p for p in r.json()["providers"]}, r.json()


def to(mail, domain):
    return [m for m in mail.handler.messages if m.recipients[0].endswith("@" + domain)]


def test_complaints_pause_a_provider_and_resuming_delivers_what_was_held(
    client, tenant, conveyor, clock, mail
):
    r = client.put("/deliverability/rules", headers=tenant.admin,
                   json={"min_volume": 50, "domains": {"corp-mail.example": "outlook"}})
    assert r.status_code == 200 and r.json()["rules"]["complaint_rate"] == 0.002, r.text
    track(client, tenant, [(f"g{i}", "gmail.com") for i in range(100)], "signed_up")
    track(client, tenant, [(f"y{i}", "yahoo.com") for i in range(60)], "signed_up")
    settle(conveyor)
    assert (len(to(mail, "gmail.com")), len(to(mail, "yahoo.com"))) == (100, 60)

    # One complaint in 100 Gmail emails: 1 % is over the 0.2 % threshold.
    r = client.post("/email-events", headers=tenant.admin,
                    json={"events": [{"type": "complained", "email": "g7@gmail.com"}]})
    assert r.json()["results"] == ["complained"]
    state, body = providers(client, tenant, "/deliverability/check", "POST")
    assert body["changed"] == 1
    gmail = state["gmail"]
    assert gmail["status"] == "paused"
    assert gmail["reason"] == "complaint rate 1.00% over 100 emails reached the 0.20% threshold"
    assert (gmail["stats"]["sent"], gmail["stats"]["complaints"]) == (100, 1)
    assert state["yahoo"]["status"] == "ok" and state["yahoo"]["stats"]["sent"] == 60
    events = client.get("/events", headers=tenant.admin,
                        params={"name": "deliverability.paused"}).json()["items"]
    assert [e["properties"]["provider"] for e in events] == ["gmail"]

    # Marketing to Gmail waits; Yahoo's goes; transactional mail to Gmail is never paused.
    track(client, tenant, [(f"g{i}", "gmail.com") for i in range(100, 105)], "signed_up")
    track(client, tenant, [(f"y{i}", "yahoo.com") for i in range(60, 65)], "signed_up")
    track(client, tenant, [("g1", "gmail.com")], "order_completed")
    settle(conveyor)
    assert len(to(mail, "yahoo.com")) == 65
    gmail_now = to(mail, "gmail.com")
    assert len(gmail_now) == 101 and gmail_now[-1].message["Subject"] == "Your receipt"
    held = client.get("/messages", headers=tenant.admin, params={"status": "pending"}).json()
    held = held["items"] if isinstance(held, dict) else held
    assert len(held) == 5
    assert all(m["error"].startswith("deliverability guard: marketing email to gmail is paused")
               for m in held)
    clock.advance(timedelta(hours=2))  # still paused: re-held, never dropped
    settle(conveyor)
    assert len(to(mail, "gmail.com")) == 101

    # Resume: the five go out; the rates count afresh from now.
    r = client.post("/deliverability/gmail/resume", headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["released"]) == ("ok", 5)
    settle(conveyor)
    assert len(to(mail, "gmail.com")) == 106
    state, body = providers(client, tenant, "/deliverability/check", "POST")
    assert body["changed"] == 0 and state["gmail"]["status"] == "ok"
    assert state["gmail"]["stats"]["complaints"] == 0
    for name, count in [("resumed", 1), ("paused", 1), ("throttled", 0), ("recovered", 0)]:
        found = client.get("/events", headers=tenant.admin,
                           params={"name": f"deliverability.{name}"}).json()["items"]
        assert len(found) == count, name


def test_rules_and_providers_are_checked(client, tenant):
    for body, field in [({"complaint_rate": 2}, "deliverability.complaint_rate"),
                        ({"domains": {"x.example": "hotmail"}}, "deliverability.domains"),
                        ({"window": "soon"}, "deliverability.window")]:
        r = client.put("/deliverability/rules", headers=tenant.admin, json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = client.post("/deliverability/aol/resume", headers=tenant.admin)
    assert r.status_code == 422 and r.json()["field"] == "provider"


def test_the_command_line_shows_and_resumes(conveyor, tenant, database_url, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from conveyor.cli.main import app

    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONVEYOR_DATA_DIR", str(tmp_path))
    runner = CliRunner()
    shown = runner.invoke(app, ["deliverability", "status", "-w", "acme"])
    assert shown.exit_code == 0, shown.output
    assert "gmail" in shown.output and "icloud" in shown.output
    done = runner.invoke(app, ["deliverability", "resume", "gmail", "-w", "acme"])
    assert done.exit_code == 0 and "gmail: resumed; 0 held emails released" in done.output
    assert conveyor.deliverability.status(tenant.workspace)["providers"][0]["reason"] == (
        "resumed by hand (was ok)"
    )
    bad = runner.invoke(app, ["deliverability", "resume", "aol", "-w", "acme"])
    assert bad.exit_code == 1 and "provider: one of gmail" in bad.output
    missing = runner.invoke(app, ["experiments", "show", "nope", "-w", "acme"])
    assert missing.exit_code == 1 and "no automation 'nope'" in missing.output


def test_near_the_line_a_provider_is_throttled_to_its_hourly_allowance(
    client, tenant, conveyor, clock, mail
):
    r = client.put("/deliverability/rules", headers=tenant.admin,
                   json={"min_volume": 50, "complaint_rate": 0.02, "throttle_per_hour": 3})
    assert r.status_code == 200, r.text
    track(client, tenant, [(f"g{i}", "gmail.com") for i in range(100)], "signed_up")
    settle(conveyor)
    client.post("/email-events", headers=tenant.admin,
                json={"events": [{"type": "complained", "email": "g3@gmail.com"}]})
    state, _ = providers(client, tenant, "/deliverability/check", "POST")
    assert state["gmail"]["status"] == "throttled"
    assert state["gmail"]["reason"] == (
        "complaint rate 1.00% over 100 emails is near the 2.00% threshold"
    )
    track(client, tenant, [(f"g{i}", "gmail.com") for i in range(100, 105)], "signed_up")
    settle(conveyor)
    assert len(to(mail, "gmail.com")) == 103  # three this hour
    held = client.get("/messages", headers=tenant.admin, params={"status": "pending"}).json()
    held = held["items"] if isinstance(held, dict) else held
    assert [m["error"][:70] for m in held] == [
        "deliverability guard: marketing email to gmail is throttled to 3 an ho"] * 2
    clock.advance(timedelta(hours=1))
    settle(conveyor)
    assert len(to(mail, "gmail.com")) == 105  # the next hour's allowance
