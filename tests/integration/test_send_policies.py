"""Collision control end to end on both databases, with the simulated clock and real peers
(SMTP sink, a Twilio-shaped HTTP server): caps across five automations (deferred, never lost),
SMS quiet hours across a DST change, scenario 9 as a whole, and the effective policy API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.support.flows import activate, settle
from tests.support.http import Peer
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CAPS = {"email": [{"max": 1, "per": "16 hours"}, {"max": 3, "per": "7 days"}]}


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()






def template(client, tenant, key, channel="email"):
    content = ({"subject": key, "text": f"{key} for {{{{ contact.email }}}}"}
               if channel == "email" else {"body": f"{key}"})
    r = client.post("/templates", headers=tenant.admin,
                    json={"key": key, "channel": channel, "content": content})
    assert r.status_code == 200, r.text


def sent_times(client, tenant, channel="email"):
    items = client.get("/messages", headers=tenant.admin,
                       params={"channel": channel, "limit": 500}).json()["items"]
    return sorted(datetime.fromisoformat(m["sent_at"]) for m in items if m["status"] == "sent")


def check_caps(times, rules):
    for n, window in rules:
        for i, t in enumerate(times):
            assert sum(1 for u in times[i:] if u < t + window) <= n, (t, times)


def test_five_daily_automations_never_exceed_the_caps_and_lose_nothing(
    client, tenant, conveyor, clock, smtp
):
    assert client.put("/send-policy", headers=tenant.admin,
                      json={"caps": CAPS}).status_code == 200
    for i in range(5):
        template(client, tenant, f"daily-{i}-a")
        template(client, tenant, f"daily-{i}-b")
        activate(client, tenant, {
            "key": f"daily-{i}", "triggers": [{"tag_added": "busy"}],
            "nodes": [{"id": "first", "type": "send_email", "template": f"daily-{i}-a"},
                      {"id": "pause", "type": "wait", "for": "1 day"},
                      {"id": "second", "type": "send_email", "template": f"daily-{i}-b"}]})
    cid = client.post("/contacts", headers=tenant.admin,
                      json={"email": "busy@example.com", "tags": ["busy"]}).json()["id"]
    settle(conveyor)
    assert len(smtp.messages) == 1
    for _ in range(6 * 28):  # four weeks in 4-hour steps
        clock.advance(timedelta(hours=4))
        settle(conveyor)
    times = sent_times(client, tenant)
    assert len(times) == 10 and len(smtp.messages) == 10  # every message went, none twice
    check_caps(times, [(1, timedelta(hours=16)), (3, timedelta(days=7))])
    deferred = [s for s in client.get(f"/contacts/{cid}/timeline", headers=tenant.admin,
                                      params={"limit": 500}).json()["items"]
                if s["outcome"] == "deferred"]
    assert deferred and deferred[-1]["reason"]["why"].startswith("deferred: email cap")
    assert "next allowed" in deferred[-1]["reason"]["why"]


def test_sms_due_at_night_goes_at_eight_local_time_across_dst(client, tenant, conveyor, clock):
    twilio = Peer(answer=(201, b'{"sid": "SM1", "status": "queued"}')).start()
    try:
        client.put("/channels/sms", headers=tenant.admin, json={
            "account_sid": "AC1", "auth_token": "t0ken", "from": "+15005550006",
            "base_url": twilio.url})
        client.put("/send-policy", headers=tenant.admin, json={
            "windows": {"sms": {"from": "08:00", "to": "21:00"}}})
        template(client, tenant, "late-sms", "sms")
        activate(client, tenant, {"key": "texts", "triggers": [{"tag_added": "text"}],
                                  "nodes": [{"id": "sms", "type": "send_sms",
                                             "template": "late-sms"}]})
        clock.set(datetime(2026, 3, 28, 22, 0, tzinfo=UTC))  # 23:00 in Warsaw, CET
        cid = client.post("/contacts", headers=tenant.admin, json={
            "phone": "+48600100200", "timezone": "Europe/Warsaw", "tags": ["text"]}).json()["id"]
        settle(conveyor)
        assert twilio.requests == []
        step = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"][0]
        assert step["outcome"] == "deferred"
        assert "quiet hours until 08:00 Europe/Warsaw" in step["reason"]["why"]
        clock.set(datetime(2026, 3, 29, 5, 59, tzinfo=UTC))  # 07:59 CEST: clocks went forward
        settle(conveyor)
        assert twilio.requests == []
        clock.set(datetime(2026, 3, 29, 6, 0, tzinfo=UTC))
        settle(conveyor)
        assert len(twilio.requests) == 1
        [at] = sent_times(client, tenant, "sms")
        assert at.astimezone(ZoneInfo("Europe/Warsaw")).strftime("%H:%M %Z") == "08:00 CEST"
    finally:
        twilio.stop()


def test_scenario_9_no_collisions(client, tenant, conveyor, clock, smtp):
    """Onboarding before promotion; at most one marketing email in 16 h and three a week,
    capped email delayed not lost; no SMS at night in the contact's timezone."""
    twilio = Peer(answer=(201, b'{"sid": "SM1", "status": "queued"}')).start()
    try:
        client.put("/channels/sms", headers=tenant.admin, json={
            "account_sid": "AC1", "auth_token": "t0ken", "from": "+15005550006",
            "base_url": twilio.url})
        policy = yaml.safe_load((EXAMPLES / "policies" / "no-collisions.yaml").read_text())
        assert client.put("/send-policy", headers=tenant.admin, json=policy).status_code == 200
        client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
        for name in ("onboarding", "promotion"):
            definition = yaml.safe_load((EXAMPLES / "automations" / f"{name}.yaml").read_text())
            for node in definition["nodes"]:
                if node.get("template"):
                    template(client, tenant, node["template"],
                             "sms" if node["type"] == "send_sms" else "email")
            activate(client, tenant, definition)
        clock.set(datetime(2026, 1, 5, 19, 30, tzinfo=UTC))  # 20:30 in Warsaw
        cid = client.post("/contacts", headers=tenant.admin, json={
            "email": "fay@example.com", "phone": "+48600100201", "timezone": "Europe/Warsaw",
            "lists": {"newsletter": "subscribed"}}).json()["id"]
        settle(conveyor)
        client.post(f"/contacts/{cid}/tags", headers=tenant.admin,
                    json={"tags": ["promo-eligible"]})
        settle(conveyor)
        for _ in range(6 * 21):  # three weeks in 4-hour steps
            clock.advance(timedelta(hours=4))
            settle(conveyor)
        runs = [(s["automation"], s["node"], s["outcome"]) for s in reversed(
            client.get(f"/contacts/{cid}/timeline", headers=tenant.admin,
                       params={"limit": 500}).json()["items"])]
        # Promotion entered only after onboarding finished (delivery's steps come later).
        delivery = {"sent", "deferred", "retrying", "skipped", "failed", "dead"}
        last_onboarding = max(
            i for i, r in enumerate(runs) if r[0] == "onboarding" and r[2] not in delivery
        )
        first_promotion = min(i for i, r in enumerate(runs) if r[0] == "spring-promotion")
        assert first_promotion > last_onboarding
        emails = sent_times(client, tenant)
        items = client.get("/messages", headers=tenant.admin, params={"limit": 500}).json()["items"]
        assert {m["status"] for m in items} == {"sent"}  # capped ones were delayed, not lost
        check_caps(emails, [(1, timedelta(hours=16)), (3, timedelta(days=7))])
        for at in sent_times(client, tenant, "sms"):
            assert 8 <= at.astimezone(ZoneInfo("Europe/Warsaw")).hour < 21
        assert sent_times(client, tenant, "sms")
        assert any(r[2] == "deferred" for r in runs)
    finally:
        twilio.stop()


def test_the_effective_policy_for_a_contact(client, tenant, conveyor, clock, smtp):
    client.put("/send-policy", headers=tenant.admin, json={"caps": CAPS})
    template(client, tenant, "hello")
    activate(client, tenant, {"key": "hi", "triggers": [{"tag_added": "hi"}],
                              "nodes": [{"id": "hello", "type": "send_email",
                                         "template": "hello"}]})
    cid = client.post("/contacts", headers=tenant.admin,
                      json={"email": "e@example.com", "tags": ["hi"]}).json()["id"]
    settle(conveyor)
    r = client.get(f"/contacts/{cid}/send-policy", headers=tenant.admin).json()
    assert r["recent_marketing"]["email"] == 1
    assert r["next_allowed"]["email"]["reason"].startswith("deferred: email cap 1 per 16 hours")
    assert r["policy"]["caps"]["email"] == [{"max": 1, "per": "16 hours"},
                                            {"max": 3, "per": "7 days"}]
    r = client.put(f"/contacts/{cid}/send-policy", headers=tenant.admin,
                   json={"caps": {"email": [{"max": 1, "per": "30 days"}]}})
    assert r.status_code == 200
    assert r.json()["policy"]["caps"]["email"] == [{"max": 1, "per": "30 days"}]
    bad = client.put("/send-policy", headers=tenant.admin,
                     json={"caps": {"email": [{"max": 1, "per": "soon"}]}})
    assert bad.status_code == 422 and bad.json()["field"] == "send_policy.caps.email.0.per"


def test_when_two_messages_compete_for_one_slot_the_higher_priority_goes_first(
    client, tenant, conveyor, clock, smtp
):
    client.put("/send-policy", headers=tenant.admin,
               json={"caps": {"email": [{"max": 1, "per": "16 hours"}]}})
    for key, level in (("newsletter-nudge", 0), ("renewal-notice", 10)):
        template(client, tenant, key)
        activate(client, tenant, {
            "key": key, "priority": {"group": key, "level": level},
            "triggers": [{"tag_added": "due"}],
            "nodes": [{"id": "mail", "type": "send_email", "template": key}]})
    client.post("/contacts", headers=tenant.admin, json={"email": "p@example.com", "tags": ["due"]})
    settle(conveyor)
    assert [m.message["Subject"] for m in smtp.messages] == ["renewal-notice"]
    clock.advance(timedelta(hours=16))
    settle(conveyor)
    assert [m.message["Subject"] for m in smtp.messages] == ["renewal-notice", "newsletter-nudge"]
