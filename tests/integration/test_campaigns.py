"""Campaigns end to end on both databases, through the public API, with the simulated clock and
the SMTP sink: a newsletter to a list minus a segment at 09:00 in each contact's timezone, its
skips (unsubscribed, suppressed, capped) with their reasons, throttling, pause, cancel halfway
without a message lost or half-sent, and the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from conveyor.domain import tracking
from tests.support.flows import activate, save_template, settle
from tests.support.http import Peer
from tests.support.smtp import SmtpSink

NEWSLETTER = {
    "key": "march-news",
    "name": "March newsletter",
    "template": "news",
    "audience": {"lists": ["newsletter"], "exclude": {"segments": ["inactive"]}},
    "schedule": {"date": "2026-03-03", "local_time": "09:00"},
}


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def run(conveyor) -> None:
    """What the worker does each round: campaigns, engine, delivery, until nothing is due."""
    for _ in range(10):
        moved = conveyor.campaigns.run_due()
        settle(conveyor)
        if not moved and not conveyor.campaigns.run_due():
            return


def contact(client, tenant, email, **values):
    r = client.post("/contacts", headers=tenant.admin, json={"email": email, **values})
    assert r.status_code in (200, 201), r.text
    return r.json()["id"]


def setup_newsletter(client, tenant):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    r = client.post("/segments", headers=tenant.admin,
                    json={"key": "inactive", "condition": {"tag": "inactive"}})
    assert r.status_code == 201, r.text
    save_template(client, tenant, {
        "key": "news", "channel": "email",
        "content": {"subject": "News for {{ contact.first_name }}",
                    "text": "Hello {{ contact.first_name }}, spring is here."}})


def recipients(smtp):
    return sorted(m.recipients[0] for m in smtp.messages)


def test_newsletter_at_nine_local_time_across_three_timezones(
    client, tenant, conveyor, clock, smtp
):
    clock.set(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    client.patch("/workspace/settings", headers=tenant.admin, json={"timezone": "Europe/London"})
    setup_newsletter(client, tenant)
    client.put("/send-policy", headers=tenant.admin,
               json={"caps": {"email": [{"max": 1, "per": "16 hours"}]}})
    save_template(client, tenant, {"key": "hello", "channel": "email",
                                   "content": {"subject": "hi", "text": "hi"}})
    activate(client, tenant, {"key": "greet", "triggers": [{"tag_added": "busy"}],
                              "nodes": [{"id": "hi", "type": "send_email", "template": "hello"}]})
    sub = {"lists": {"newsletter": "subscribed"}}
    people = {
        "tokyo@example.com": "Asia/Tokyo",
        "busy@example.com": "Asia/Tokyo",  # emailed today: capped at 00:00 UTC tomorrow
        "warsaw@example.com": "Europe/Warsaw",
        "leaver@example.com": "Europe/Warsaw",  # unsubscribes after the audience is frozen
        "ny@example.com": "America/New_York",
        "blocked@example.com": "America/New_York",  # on the suppression list
    }
    ids = {email: contact(client, tenant, email, timezone=zone, first_name=email.split("@")[0],
                          **sub) for email, zone in people.items()}
    ids["nozone@example.com"] = contact(client, tenant, "nozone@example.com", **sub)
    contact(client, tenant, "sleepy@example.com", timezone="Asia/Tokyo", tags=["inactive"], **sub)
    contact(client, tenant, "outsider@example.com", timezone="Asia/Tokyo")  # not on the list
    client.post(f"/contacts/{ids['busy@example.com']}/tags", headers=tenant.admin,
                json={"tags": ["busy"]})
    client.post("/suppressions", headers=tenant.admin,
                json={"channel": "email", "address": "blocked@example.com"})
    settle(conveyor)
    assert recipients(smtp) == ["busy@example.com"]  # the automation's email, now
    seen = 1

    r = client.post("/campaigns", headers=tenant.admin, json=NEWSLETTER)
    assert r.status_code == 200 and r.json()["outcome"] == "created", r.text
    assert client.post("/campaigns", headers=tenant.admin,
                       json=NEWSLETTER).json()["outcome"] == "unchanged"
    # Preview: the count before scheduling, the content for a contact.
    assert client.get("/campaigns/march-news/count", headers=tenant.admin).json() == {"count": 7}
    preview = client.post("/campaigns/march-news/preview", headers=tenant.admin,
                          json={"contact_id": ids["tokyo@example.com"]}).json()
    assert preview["subject"] == "News for tokyo"
    r = client.post("/campaigns/march-news/schedule", headers=tenant.admin, json={})
    assert r.status_code == 200, r.text
    # Like Timewarp: it starts when UTC+14 reaches 09:00 on the 3rd (19:00 UTC on the 2nd).
    assert r.json()["starts_at"] == "2026-03-02T19:00:00Z"
    assert r.json()["status"] == "scheduled"

    run(conveyor)
    assert client.get("/campaigns/march-news", headers=tenant.admin).json()["status"] == "scheduled"
    clock.set(datetime(2026, 3, 2, 19, 0, tzinfo=UTC))
    run(conveyor)
    campaign = client.get("/campaigns/march-news", headers=tenant.admin).json()
    assert campaign["status"] == "sending" and campaign["audience_count"] == 7
    assert campaign["notes"] == ["audience frozen at 2026-03-02T19:00:00+00:00: 7 contacts, 7 queued"]
    assert len(smtp.messages) == seen
    # Frozen: a contact joining the list now is not in this campaign.
    contact(client, tenant, "late@example.com", timezone="Asia/Tokyo", **sub)
    r = client.patch(f"/contacts/{ids['leaver@example.com']}", headers=tenant.admin,
                     json={"lists": {"newsletter": "unsubscribed"}})
    assert r.status_code == 200, r.text

    expected = [  # (UTC instant, who gets it then)
        (datetime(2026, 3, 3, 0, 0, tzinfo=UTC), ["tokyo@example.com"]),  # 09:00 JST
        (datetime(2026, 3, 3, 8, 0, tzinfo=UTC), ["warsaw@example.com"]),  # 09:00 CET
        (datetime(2026, 3, 3, 9, 0, tzinfo=UTC), ["nozone@example.com"]),  # London, GMT
        (datetime(2026, 3, 3, 14, 0, tzinfo=UTC), ["ny@example.com"]),  # 09:00 EST
    ]
    for at, who in expected:
        clock.set(at - timedelta(minutes=1))
        run(conveyor)
        assert len(smtp.messages) == seen, at
        clock.set(at)
        run(conveyor)
        assert sorted(m.recipients[0] for m in smtp.messages[seen:]) == who, at
        seen = len(smtp.messages)
    clock.advance(timedelta(days=2))
    run(conveyor)
    assert len(smtp.messages) == seen

    with conveyor.store.read() as tx:
        rows = tx.messages.page(tenant.workspace.id, limit=100)
    sent = {r.recipient: r.sent_at for r in rows if r.campaign_id and r.status == "sent"}
    assert sent == {
        "tokyo@example.com": datetime(2026, 3, 3, 0, 0, tzinfo=UTC),
        "warsaw@example.com": datetime(2026, 3, 3, 8, 0, tzinfo=UTC),
        "nozone@example.com": datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        "ny@example.com": datetime(2026, 3, 3, 14, 0, tzinfo=UTC),
    }
    report = client.get("/campaigns/march-news/report", headers=tenant.admin).json()
    assert report["status"] == "sent"
    assert (report["audience"], report["queued"], report["sent"], report["skipped"]) == (7, 7, 4, 3)
    reasons = report["skipped_reasons"]
    assert reasons["not subscribed to newsletter (unsubscribed)"] == 1
    assert reasons["suppressed: manual"] == 1
    [capped] = [k for k in reasons if k.startswith("skipped: email cap")]
    assert reasons[capped] == 1
    # Each message names its campaign, in the outbox and in its events (reports group by it).
    events = client.get("/events", headers=tenant.admin, params={"limit": 500}).json()["items"]
    tagged = [e for e in events if e["name"] == "email.sent"
              and e["properties"].get("campaign") is not None]
    assert len(tagged) == 4


def test_cancel_halfway_withdraws_the_rest_and_finishes_what_delivery_holds(
    client, tenant, conveyor, clock, smtp
):
    clock.set(datetime(2026, 4, 1, 10, 0, tzinfo=UTC))
    setup_newsletter(client, tenant)
    for i in range(40):
        contact(client, tenant, f"p{i:02d}@example.com", lists={"newsletter": "subscribed"})
    settle(conveyor)
    r = client.post("/campaigns", headers=tenant.admin, json={
        "key": "warmup", "template": "news", "audience": {"lists": ["newsletter"]},
        "throttle": {"per_hour": 10}})
    assert r.status_code == 200, r.text
    r = client.post("/campaigns/warmup/send", headers=tenant.admin)
    assert r.status_code == 200 and r.json()["status"] == "scheduled", r.text
    run(conveyor)
    assert len(smtp.messages) == 10  # the first hour's slot
    # Pause: the next slot comes due but waits.
    assert client.post("/campaigns/warmup/pause", headers=tenant.admin).json()["status"] == "paused"
    clock.advance(timedelta(hours=1))
    run(conveyor)
    assert len(smtp.messages) == 10
    assert client.post("/campaigns/warmup/resume",
                       headers=tenant.admin).json()["status"] == "sending"
    run(conveyor)
    assert len(smtp.messages) == 20
    # Delivery claims three of the next slot (as a worker would, then dies or is slow) …
    clock.advance(timedelta(hours=1))
    with conveyor.store.write() as tx:
        held = tx.messages.claim(clock.now(), 3, timedelta(minutes=5))
    assert len(held) == 3 and all(m.campaign_id for m in held)
    # … and the campaign is cancelled: the rest is withdrawn at once, those three finish.
    r = client.post("/campaigns/warmup/cancel", headers=tenant.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    with conveyor.store.read() as tx:
        statuses = tx.campaigns.status_counts(tx.campaigns.get(tenant.workspace.id, "warmup").id)
    assert statuses == {"sent": 20, "sending": 3, "cancelled": 17}
    clock.advance(timedelta(minutes=6))  # the claim's lease runs out: another worker finishes
    run(conveyor)
    clock.advance(timedelta(hours=5))
    run(conveyor)
    assert len(smtp.messages) == 23
    assert len(set(recipients(smtp))) == 23  # none twice
    report = client.get("/campaigns/warmup/report", headers=tenant.admin).json()
    assert (report["sent"], report["cancelled"], report["waiting"]) == (23, 17, 0)
    assert any("17 queued messages withdrawn" in n for n in report["notes"])
    r = client.post("/campaigns/warmup/resume", headers=tenant.admin)
    assert r.status_code == 409 and "cancelled" in r.json()["detail"]


def test_slots_of_a_throttled_campaign_are_an_hour_apart(client, tenant, conveyor, clock, smtp):
    clock.set(datetime(2026, 4, 1, 10, 0, tzinfo=UTC))
    setup_newsletter(client, tenant)
    for i in range(5):
        contact(client, tenant, f"t{i}@example.com", lists={"newsletter": "subscribed"})
    client.post("/campaigns", headers=tenant.admin, json={
        "key": "slow", "template": "news", "audience": {"lists": ["newsletter"]},
        "throttle": {"per_hour": 2}})
    client.post("/campaigns/slow/send", headers=tenant.admin)
    conveyor.campaigns.run_due()
    with conveyor.store.read() as tx:
        rows = tx.messages.page(tenant.workspace.id, limit=10)
    assert sorted(r.send_after for r in rows) == [
        datetime(2026, 4, 1, h, 0, tzinfo=UTC) for h in (10, 10, 11, 11, 12)
    ]


def test_late_timezones_get_it_the_next_day_and_the_report_says_so(
    client, tenant, conveyor, clock, smtp
):
    clock.set(datetime(2026, 3, 3, 10, 0, tzinfo=UTC))  # 19:00 in Tokyo, 05:00 in New York
    setup_newsletter(client, tenant)
    contact(client, tenant, "tokyo@example.com", timezone="Asia/Tokyo",
            lists={"newsletter": "subscribed"})
    contact(client, tenant, "ny@example.com", timezone="America/New_York",
            lists={"newsletter": "subscribed"})
    client.post("/campaigns", headers=tenant.admin, json=NEWSLETTER)
    r = client.post("/campaigns/march-news/schedule", headers=tenant.admin, json={})
    assert r.json()["starts_at"] == "2026-03-03T10:00:00Z"  # now: 09:00 has come somewhere
    conveyor.campaigns.run_due()
    with conveyor.store.read() as tx:
        due = {r.contact_id: r.send_after for r in tx.messages.page(tenant.workspace.id)}
    assert sorted(due.values()) == [datetime(2026, 3, 3, 14, 0, tzinfo=UTC),  # NY, today
                                    datetime(2026, 3, 4, 0, 0, tzinfo=UTC)]  # Tokyo, tomorrow
    notes = client.get("/campaigns/march-news", headers=tenant.admin).json()["notes"]
    assert any("Asia/Tokyo" in n and "next day" in n for n in notes)


def test_bad_definitions_are_422_naming_the_field(client, tenant, conveyor):
    setup_newsletter(client, tenant)
    cases = [
        ({**NEWSLETTER, "template": "nope"}, "template"),
        ({**NEWSLETTER, "audience": {"lists": ["nope"]}}, "audience.lists"),
        ({**NEWSLETTER, "audience": {}}, "audience"),
        ({**NEWSLETTER, "audience": {"lists": ["newsletter"], "exclude": {"segments": ["x"]}}},
         "audience.exclude.segments"),
        ({**NEWSLETTER, "schedule": {"date": "2026-02-30", "local_time": "09:00"}},
         "schedule.date"),
        ({**NEWSLETTER, "schedule": {"date": "2026-03-01", "local_time": "9am"}},
         "schedule.local_time"),
        ({**NEWSLETTER, "schedule": {"at": "2026-03-01T09:00:00"}}, "schedule.at"),
        ({**NEWSLETTER, "throttle": {"per_hour": 0}}, "throttle.per_hour"),
        ({**NEWSLETTER, "throttle": {"per_hour": 100}}, "throttle"),  # with a local time
        ({**NEWSLETTER, "key": "Bad Key"}, "key"),
    ]
    for body, field in cases:
        r = client.post("/campaigns", headers=tenant.admin, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["field"] == field, (field, r.json())
    r = client.post("/campaigns/nope/send", headers=tenant.admin)
    assert r.status_code == 404
    client.post("/campaigns", headers=tenant.admin, json=NEWSLETTER)
    r = client.post("/campaigns/march-news/pause", headers=tenant.admin)
    assert r.status_code == 409 and "draft" in r.json()["detail"]


def ab_setup(client, tenant, conveyor, clock, n=200):
    clock.set(datetime(2026, 5, 5, 9, 0, tzinfo=UTC))
    setup_newsletter(client, tenant)
    for key, subject in (("news-a", "Spring is here"), ("news-b", "20% off, today only")):
        save_template(client, tenant, {"key": key, "channel": "email", "content": {
            "subject": subject,
            "html": '<p>Hi! <a href="https://shop.example/sale">See the sale</a></p>'}})
    for i in range(n):
        contact(client, tenant, f"ab{i:03d}@example.com", lists={"newsletter": "subscribed"})
    r = client.post("/campaigns", headers=tenant.admin, json={
        "key": "subject-test", "audience": {"lists": ["newsletter"]},
        "ab_test": {"variants": ["news-a", "news-b"], "sample": 20, "wait": "4 hours"}})
    assert r.status_code == 200 and r.json()["campaign"]["template"] == "news-a", r.text
    assert client.post("/campaigns/subject-test/send", headers=tenant.admin).status_code == 200
    run(conveyor)


def click(client, tenant, messages):
    for m in messages:
        token = tracking.sign(tenant.workspace.secret, "click", tenant.workspace.id, m.id, 0)
        r = client.get(f"/t/c/{token}", follow_redirects=False)
        assert r.status_code in (302, 303, 307), r.text


def by_template(conveyor, tenant):
    with conveyor.store.read() as tx:
        rows = tx.messages.page(tenant.workspace.id, limit=1000)
    out: dict[str, list] = {}
    for row in rows:
        out.setdefault(row.template, []).append(row)
    return out


def test_ab_sample_then_the_significant_winner_to_the_rest(client, tenant, conveyor, clock, smtp):
    ab_setup(client, tenant, conveyor, clock)
    sample = by_template(conveyor, tenant)
    assert {k: len(v) for k, v in sample.items()} == {"news-a": 20, "news-b": 20}
    assert len(smtp.messages) == 40
    click(client, tenant, sample["news-a"][:1])
    click(client, tenant, sample["news-b"][:16])
    clock.advance(timedelta(hours=3, minutes=59))
    run(conveyor)
    assert len(smtp.messages) == 40  # the rest waits for the wait
    clock.advance(timedelta(minutes=1))
    run(conveyor)
    assert len(smtp.messages) == 200
    rest = [m for m in smtp.messages[40:]]
    assert {m.message["Subject"] for m in rest} == {"20% off, today only"}
    assert len({m.recipients[0] for m in smtp.messages}) == 200  # each contact once
    report = client.get("/campaigns/subject-test/report", headers=tenant.admin).json()
    assert report["status"] == "sent" and report["sent"] == 200
    ab = report["ab_test"]
    assert ab["winner"] == "news-b" and ab["decision"]["rule"] == "significant"
    assert [v["clicked"] for v in ab["variants"]] == [1, 16]
    assert any("news-b won on click rate, a significant difference" in n
               for n in report["notes"])
    assert any("sample of 40 (20 %) queued: news-a 20, news-b 20" in n for n in report["notes"])
    assert "160 queued with news-b" in report["notes"]


def test_ab_without_a_significant_winner_sends_the_best_and_says_so(
    client, tenant, conveyor, clock, smtp
):
    ab_setup(client, tenant, conveyor, clock, n=100)
    sample = by_template(conveyor, tenant)
    assert {k: len(v) for k, v in sample.items()} == {"news-a": 10, "news-b": 10}
    click(client, tenant, sample["news-a"][:2])
    click(client, tenant, sample["news-b"][:3])
    clock.advance(timedelta(hours=4))
    run(conveyor)
    assert len(smtp.messages) == 100
    report = client.get("/campaigns/subject-test/report", headers=tenant.admin).json()
    assert report["ab_test"]["winner"] == "news-b"
    assert report["ab_test"]["decision"]["rule"] == "best at max duration"
    assert any("no significant winner after the wait; news-b had the best click rate" in n
               for n in report["notes"])


def test_example_campaigns_apply(client, tenant, conveyor):
    examples = Path(__file__).resolve().parents[2] / "examples"
    for template in yaml.safe_load((examples / "templates" / "newsletter.yaml").read_text()):
        save_template(client, tenant, template)
    for key in ("newsletter", "customers", "sms-offers"):
        client.post("/lists", headers=tenant.admin, json={"key": key})
    inactive = yaml.safe_load((examples / "segments" / "inactive.yaml").read_text())
    assert client.post("/segments", headers=tenant.admin, json=inactive).status_code == 201
    files = sorted((examples / "campaigns").glob("*.yaml"))
    assert len(files) >= 4
    for path in files:
        info, outcome = conveyor.campaigns.apply(tenant.workspace, yaml.safe_load(path.read_text()))
        assert outcome == "created", path


def test_an_sms_campaign_goes_to_numbers_and_respects_stop(client, tenant, conveyor, clock):
    twilio = Peer(answer=(201, b'{"sid": "SM1", "status": "queued"}')).start()
    try:
        client.put("/channels/sms", headers=tenant.admin, json={
            "account_sid": "AC1", "auth_token": "t0ken", "from": "+15005550006",
            "base_url": twilio.url})
        client.post("/lists", headers=tenant.admin, json={"key": "sms-offers"})
        save_template(client, tenant, {"key": "flash", "channel": "sms",
                                       "content": {"body": "Flash sale, {{ contact.first_name }}!"}})
        sub = {"lists": {"sms-offers": "subscribed"}}
        contact(client, tenant, "a@example.com", phone="+48600100200", first_name="Ada", **sub)
        contact(client, tenant, "b@example.com", phone="+48600100201", first_name="Bo", **sub)
        contact(client, tenant, "c@example.com", first_name="Cy", **sub)  # no phone: not in it
        client.post("/suppressions", headers=tenant.admin,
                    json={"channel": "sms", "address": "+48600100201"})  # replied STOP
        r = client.post("/campaigns", headers=tenant.admin, json={
            "key": "flash", "channel": "sms", "template": "flash",
            "audience": {"lists": ["sms-offers"]}})
        assert r.status_code == 200, r.text
        assert client.get("/campaigns/flash/count", headers=tenant.admin).json() == {"count": 2}
        client.post("/campaigns/flash/send", headers=tenant.admin)
        run(conveyor)
        assert len(twilio.requests) == 1
        report = client.get("/campaigns/flash/report", headers=tenant.admin).json()
        assert (report["status"], report["sent"], report["skipped"]) == ("sent", 1, 1)
        assert report["skipped_reasons"] == {"suppressed: manual": 1}
    finally:
        twilio.stop()
