"""Scenarios 1, 2, 4 and 6 end to end with real delivery: the automations and templates under
examples/, the API over HTTP, a real SMTP server (aiosmtpd), the simulated clock. Assertions are
on the received MIME; tracking links are followed over HTTP and move the contacts along."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.flows import settle
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def mail(client, tenant, smtp):
    """The tenant sends through the SMTP sink, with every example template loaded."""
    r = client.put(
        "/channels/email",
        headers=tenant.admin,
        json={"from": "Acme Shop <news@acme-shop.com>", "reply_to": "help@acme-shop.com",
              "smtp_url": smtp.url},
    )
    assert r.status_code == 200, r.text
    client.post("/fields", headers=tenant.admin, json={"key": "promo_code", "type": "text"})
    for path in sorted((EXAMPLES / "templates").glob("*.yaml")):
        for template in yaml.safe_load(path.read_text()):
            r = client.post("/templates", headers=tenant.admin, json=template)
            assert r.status_code == 200, r.text
    return smtp


def apply(client, tenant, name):
    definition = yaml.safe_load((EXAMPLES / "automations" / f"{name}.yaml").read_text())
    assert client.post("/automations", headers=tenant.admin, json=definition).status_code == 200
    r = client.patch(f"/automations/{definition['key']}", headers=tenant.admin,
                     json={"status": "active"})
    assert r.status_code == 200, r.text




def local(url: str, server) -> str:
    """Links carry the public URL; the test server listens elsewhere on 127.0.0.1."""
    parts = urlsplit(url)
    return f"{server.url}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def links_in(html: str) -> list[str]:
    import re

    return re.findall(r'href="([^"]+)"', html)


def timeline(client, tenant, cid):
    items = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin,
                       params={"limit": 500}).json()["items"]
    return list(reversed(items))


def events(client, tenant, cid, name):
    return client.get(f"/contacts/{cid}/events", headers=tenant.admin,
                      params={"name": name}).json()["items"]


def test_scenario_1_welcome_series_is_delivered_tracked_and_unsubscribable(
    client, server, tenant, conveyor, clock, mail
):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "ada@example.com", "first_name": "Ada", "fields": {"promo_code": "ADA-42"},
        "lists": {"newsletter": "subscribed"},
    }).json()["id"]
    settle(conveyor)

    [first] = mail.to("ada@example.com")
    m = first.message
    assert m["Subject"] == "Welcome, Ada!"
    assert m["From"] == "Acme Shop <news@acme-shop.com>"
    assert m["Reply-To"] == "help@acme-shop.com"
    assert m["To"] == "Ada <ada@example.com>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert m["List-Unsubscribe"].startswith("<http") and "/u/" in m["List-Unsubscribe"]
    assert m["Message-ID"].startswith("<run.") and m["Message-ID"].endswith("@acme-shop.com>")
    html, text = first.part("html"), first.part("plain")
    assert "Hello Ada," in html and "Three things to try this week" in html  # MJML + preheader
    assert "Hello Ada," in text and "<" not in text.replace("<http", "")  # text derived from HTML
    assert "https://shop.example/guide" in text and "/u/" in text  # links, unsubscribe too
    assert "Thanks for subscribing to Acme Shop" in text  # the sender's name, not "default"
    tracked = [u for u in links_in(html) if "/t/c/" in u]
    assert len(tracked) == 2  # the guide and the button; the unsubscribe link is left as is
    assert "https://shop.example/guide" not in html

    # Opening and clicking, over HTTP, become events linked to the message, run and node.
    pixel = next(u for u in links_in(html.replace("src=", "href=")) if "/t/o/" in u)
    assert client.get(local(pixel, server)).status_code == 200
    r = client.get(local(tracked[0], server), follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "https://shop.example/guide"
    [opened] = events(client, tenant, cid, "email.opened")
    [clicked] = events(client, tenant, cid, "email.clicked")
    assert opened["properties"]["template"] == "welcome-1"
    assert opened["properties"]["automation"] == "welcome-series"
    assert opened["properties"]["node"] == "welcome"
    assert clicked["properties"]["url"] == "https://shop.example/guide"
    # A token altered by one character leads nowhere and records nothing.
    forged = tracked[0][:-1] + ("A" if tracked[0][-1] != "A" else "B")
    assert client.get(local(forged, server), follow_redirects=False).status_code == 404
    assert len(events(client, tenant, cid, "email.clicked")) == 1

    clock.advance(timedelta(days=7))
    settle(conveyor)
    second = mail.to("ada@example.com")[1]
    assert second.message["Subject"] == "Tips for your first week"
    assert 'style="color: #333;"' in second.part("html")  # CSS inlined

    # One-click unsubscribe (RFC 8058) from the second email: no third email.
    unsubscribe = second.message["List-Unsubscribe"].strip("<>").split(">")[0]
    r = client.post(local(unsubscribe, server), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    contact = client.get(f"/contacts/{cid}", headers=tenant.admin).json()
    assert contact["lists"] == {"newsletter": "unsubscribed"}
    clock.advance(timedelta(days=7))
    settle(conveyor)
    assert len(mail.to("ada@example.com")) == 2
    outcomes = [(s["node"], s["outcome"]) for s in timeline(client, tenant, cid)]
    assert ("welcome", "sent") in outcomes and ("offer", "skipped") in outcomes
    skipped = next(s for s in timeline(client, tenant, cid) if s["outcome"] == "skipped")
    assert skipped["reason"]["why"] == "suppressed: unsubscribed"


def test_scenario_2_birthday_at_nine_in_the_contacts_timezone(
    client, tenant, conveyor, clock, mail
):
    client.post("/fields", headers=tenant.admin, json={"key": "birth_date", "type": "date"})
    apply(client, tenant, "birthday")
    # 2026-01-05 09:00 UTC is 10:00 in Warsaw and 04:00 in New York.
    client.post("/contacts", headers=tenant.admin, json={
        "email": "ola@example.com", "first_name": "Ola", "timezone": "Europe/Warsaw",
        "fields": {"birth_date": "1990-01-06", "promo_code": "OLA-BDAY"}})
    client.post("/contacts", headers=tenant.admin, json={
        "email": "ny@example.com", "timezone": "America/New_York",
        "fields": {"birth_date": "1985-01-06"}})
    settle(conveyor)
    assert mail.messages == []
    clock.set(datetime(2026, 1, 6, 7, 59, tzinfo=UTC))  # 08:59 in Warsaw
    settle(conveyor)
    assert mail.messages == []
    clock.set(datetime(2026, 1, 6, 8, 0, tzinfo=UTC))  # 09:00 in Warsaw
    settle(conveyor)
    [ola] = mail.messages
    assert ola.recipients == ["ola@example.com"]
    assert ola.message["Subject"] == "Happy birthday, Ola!"
    assert "OLA-BDAY" in ola.part("html")
    clock.set(datetime(2026, 1, 6, 14, 0, tzinfo=UTC))  # 09:00 in New York
    settle(conveyor)
    assert [m.recipients for m in mail.messages] == [["ola@example.com"], ["ny@example.com"]]
    assert "BDAY" in mail.messages[1].part("html")  # no code in the field: the default
    clock.set(datetime(2026, 1, 7, 14, 0, tzinfo=UTC))
    settle(conveyor)
    assert len(mail.messages) == 2  # once a year


def test_scenario_4_cart_reminder_lists_the_carts_items(client, tenant, conveyor, clock, mail):
    apply(client, tenant, "abandoned-cart")
    client.post("/v1/identify", headers=tenant.write,
                json={"userId": "cara", "traits": {"email": "cara@example.com"}})
    client.post("/v1/track", headers=tenant.write, json={
        "userId": "cara", "event": "cart_updated",
        "properties": {"items": [{"sku": "A-1", "qty": 2}, {"sku": "<b>B-2</b>"}], "total": 40}})
    settle(conveyor)
    clock.advance(timedelta(hours=1, minutes=1))
    settle(conveyor)
    [reminder] = mail.to("cara@example.com")
    html = reminder.part("html")
    assert "2 × A-1" in html and "1 × &lt;b&gt;B-2&lt;/b&gt;" in html  # escaped: no injection
    assert "Total: 40" in html
    clock.advance(timedelta(days=1))
    settle(conveyor)
    second = mail.to("cara@example.com")[1]
    assert second.message["Subject"] == "Your cart is waiting"
    assert "holds\n2 item(s)" in second.part("plain") or "2 item(s)" in second.part("plain")


def test_scenario_6_opening_the_offer_moves_the_contact_to_the_follow_up(
    client, server, tenant, conveyor, clock, mail
):
    apply(client, tenant, "open-or-remind")
    opener = client.post("/contacts", headers=tenant.admin,
                         json={"email": "opens@example.com", "tags": ["offer-2026"]}).json()["id"]
    client.post("/contacts", headers=tenant.admin,
                json={"email": "ignores@example.com", "tags": ["offer-2026"]})
    settle(conveyor)
    [offer] = mail.to("opens@example.com")
    assert offer.message["Subject"] == "20% off this weekend"
    clock.advance(timedelta(hours=5))
    pixel = next(u for u in links_in(offer.part("html").replace("src=", "href=")) if "/t/o/" in u)
    # Apple's Mail Privacy Protection proxy would say nothing about the person: flagged.
    assert client.get(local(pixel, server), headers={"User-Agent": "Mozilla/5.0"}).status_code == 200
    settle(conveyor)
    assert [m.message["Subject"] for m in mail.to("opens@example.com")] == [
        "20% off this weekend", "Picked something yet? Here is free shipping"]
    wait = next(s for s in timeline(client, tenant, opener)
                if s["node"] == "wait-for-open" and s["outcome"] == "met")
    assert "email.opened" in str(wait["reason"])
    clock.advance(timedelta(days=3))
    settle(conveyor)
    assert [m.message["Subject"] for m in mail.to("ignores@example.com")] == [
        "20% off this weekend", "Last chance: 20% off ends tonight"]
    assert len(mail.to("opens@example.com")) == 2


def test_mail_privacy_proxy_opens_are_flagged(client, server, tenant, conveyor, mail):
    apply(client, tenant, "open-or-remind")
    cid = client.post("/contacts", headers=tenant.admin,
                      json={"email": "p@example.com", "tags": ["offer-2026"]}).json()["id"]
    settle(conveyor)
    html = mail.to("p@example.com")[0].part("html")
    pixel = next(u for u in links_in(html.replace("src=", "href=")) if "/t/o/" in u)
    ua = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    client.get(local(pixel, server), headers={"User-Agent": ua})
    [opened] = events(client, tenant, cid, "email.opened")
    assert opened["properties"]["proxy"] == "google"


def test_smtp_outage_defers_and_nothing_is_lost(client, tenant, conveyor, clock, mail):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    mail.stop()
    for i in range(3):
        client.post("/contacts", headers=tenant.admin, json={
            "email": f"p{i}@example.com", "lists": {"newsletter": "subscribed"}})
    settle(conveyor)
    items = client.get("/messages", headers=tenant.admin).json()["items"]
    assert [m["status"] for m in items] == ["pending"] * 3
    assert all("unreachable" in m["error"] and m["attempts"] == 1 for m in items)
    for _ in range(4):  # an hour of outage: retried with backoff, still waiting
        clock.advance(timedelta(minutes=15))
        settle(conveyor)
    mail.restart()
    clock.advance(timedelta(hours=2))
    settle(conveyor)
    assert sorted(r for m in mail.messages for r in m.recipients) == [
        "p0@example.com", "p1@example.com", "p2@example.com"]
    items = client.get("/messages", headers=tenant.admin).json()["items"]
    assert {m["status"] for m in items} == {"sent"}
    cid = items[0]["contact_id"]
    outcomes = [s["outcome"] for s in timeline(client, tenant, cid) if s["node"] == "welcome"]
    assert outcomes[0] == "queued" and outcomes[-1] == "sent" and "retrying" in outcomes


def test_hard_bounce_suppresses_the_address(client, tenant, conveyor, clock, mail):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    mail.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "gone@example.com", "lists": {"newsletter": "subscribed"}}).json()["id"]
    settle(conveyor)
    [message] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert message["status"] == "failed" and "550" in message["error"]
    [bounced] = events(client, tenant, cid, "email.bounced")
    assert bounced["properties"]["type"] == "hard"
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "newsletter": "bounced"}
    suppressions = client.get("/suppressions", headers=tenant.admin).json()
    assert [(s["address"], s["reason"]) for s in suppressions] == [("gone@example.com", "bounced")]


def test_templates_are_checked_on_save_with_line_and_column(client, tenant):
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "bad", "channel": "email",
        "content": {"subject": "Hi", "html": "<p>ok</p>\n<p>{{ contact.first_name | shout }}</p>"}})
    assert r.status_code == 422
    problem = r.json()
    assert problem["field"] == "content.html"
    assert "line 2" in problem["detail"] and "unknown filter 'shout'" in problem["detail"]
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "bad", "channel": "sms", "content": {"body": "Hi {% if x %} no end"}})
    assert r.status_code == 422 and r.json()["field"] == "content.body"
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "t", "channel": "email", "content": {"subject": "A", "text": "v1"}})
    assert r.json()["result"] == "created" and r.json()["version"] == 1
    r = client.put("/templates/t", headers=tenant.admin, json={
        "channel": "email", "content": {"subject": "A", "text": "v2"}})
    assert r.json()["result"] == "new version" and r.json()["version"] == 2
    versions = client.get("/templates/t/versions", headers=tenant.admin).json()
    assert [v["content"]["text"] for v in versions] == ["v1", "v2"]


def test_preview_renders_for_a_contact_with_fallbacks(client, tenant, mail):
    cid = client.post("/contacts", headers=tenant.admin, json={"email": "x@example.com"}).json()["id"]
    r = client.post("/templates/cart-reminder-1/preview", headers=tenant.admin,
                    json={"contact_id": cid, "event": {"items": [{"sku": "Z-9"}]}})
    assert r.status_code == 200, r.text
    assert "1 × Z-9" in r.json()["html"] and "Total: —" in r.json()["html"]
    assert r.json()["subject"] == "You left something in your cart"


def test_unsubscribe_page_asks_before_it_acts(client, server, tenant, conveyor, mail):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "u@example.com", "lists": {"newsletter": "subscribed"}}).json()["id"]
    settle(conveyor)
    html = mail.to("u@example.com")[0].part("html")
    link = next(u for u in links_in(html) if "/u/" in u)
    page = client.get(local(link, server))
    assert page.status_code == 200 and "Unsubscribe" in page.text
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "newsletter": "subscribed"}  # a GET (a link scanner) changes nothing
    r = client.post(local(link, server), data={"all": "1"})
    assert r.status_code == 200 and "all our emails" in r.text
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "newsletter": "unsubscribed"}
    assert [s["address"] for s in client.get("/suppressions", headers=tenant.admin).json()] == [
        "u@example.com"]
    assert client.get(local(link[:-2] + "xx", server)).status_code == 404



def test_replayed_unsubscribes_and_confirmations_log_one_event(
    client, server, tenant, conveyor, mail
):
    """Mail providers and scanners replay RFC 8058 one-click POSTs and re-open links: the first
    changes the contact and logs `email.unsubscribed`; replays change nothing and log nothing."""
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    client.post("/lists", headers=tenant.admin, json={"key": "digest", "double_opt_in": True})
    apply(client, tenant, "welcome-series")
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "r@example.com",
        "lists": {"newsletter": "subscribed", "digest": "subscribed"}}).json()["id"]
    settle(conveyor)
    received = mail.to("r@example.com")
    confirm = next(w for m in received if "confirm" in m.message["Subject"]
                   for w in m.part("plain").split() if "/confirm/" in w)
    for _ in range(3):
        assert client.get(local(confirm, server)).status_code == 200
    subscribed = events(client, tenant, cid, "list.subscribed")
    assert [e["properties"]["list"] for e in subscribed].count("digest") == 1
    html = next(m for m in received if m.part("html")).part("html")
    link = next(u for u in links_in(html) if "/u/" in u)
    for _ in range(3):
        r = client.post(local(link, server), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200
    assert len(events(client, tenant, cid, "email.unsubscribed")) == 1
    assert client.post(local(link, server), data={"all": "1"}).status_code == 200
    logged = len(events(client, tenant, cid, "email.unsubscribed"))
    assert client.post(local(link, server), data={"all": "1"}).status_code == 200
    assert len(events(client, tenant, cid, "email.unsubscribed")) == logged
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "newsletter": "unsubscribed", "digest": "unsubscribed"}


def test_double_opt_in_sends_the_confirmation_email_and_its_link_confirms(
    client, server, tenant, conveyor, mail
):
    client.post("/lists", headers=tenant.admin, json={"key": "digest", "double_opt_in": True})
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "doi@example.com", "lists": {"digest": "subscribed"}}).json()["id"]
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "digest": "unconfirmed"}
    settle(conveyor)
    [confirmation] = mail.to("doi@example.com")
    assert confirmation.message["Subject"] == "Please confirm your subscription to digest"
    assert confirmation.message["List-Unsubscribe"] is None  # transactional
    link = next(w for w in confirmation.part("plain").split() if "/confirm/" in w)
    assert client.get(local(link, server)).status_code == 200
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["lists"] == {
        "digest": "subscribed"}
    settle(conveyor)
    assert len(mail.to("doi@example.com")) == 1  # once per request


def test_a_worker_that_died_holding_messages_loses_nothing(client, tenant, conveyor, clock, mail):
    """Messages claimed by a worker that then died go out when the lease runs out, once, and
    their events are recorded once."""
    lease = timedelta(seconds=conveyor.settings.delivery_lease_seconds)
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "lease@example.com", "lists": {"newsletter": "subscribed"}}).json()["id"]
    conveyor.engine.run_until_idle()
    claimed = conveyor.store.transact(lambda tx: tx.messages.claim(clock.now(), 100, lease))
    assert len(claimed) == 1  # ... and the worker dies here, before sending or recording
    settle(conveyor)
    assert mail.messages == []  # still leased to the dead worker
    clock.advance(lease + timedelta(seconds=1))
    settle(conveyor)
    assert len(mail.to("lease@example.com")) == 1
    assert len(events(client, tenant, cid, "email.sent")) == 1
    [message] = client.get("/messages", headers=tenant.admin).json()["items"]
    assert message["status"] == "sent" and message["attempts"] == 2


def test_leaving_the_list_stops_the_welcome_series_without_extra_configuration(
    client, tenant, conveyor, clock, mail
):
    """The series was started by subscribing to `newsletter` and its send nodes name no list:
    a contact who unsubscribes from that list (not from all mail) gets none of the rest."""
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    apply(client, tenant, "welcome-series")
    cid = client.post("/contacts", headers=tenant.admin, json={
        "email": "bo@example.com", "first_name": "Bo", "lists": {"newsletter": "subscribed"},
    }).json()["id"]
    settle(conveyor)
    assert len(mail.to("bo@example.com")) == 1
    r = client.put(f"/contacts/{cid}/lists/newsletter", headers=tenant.admin,
                   json={"status": "unsubscribed"})
    assert r.status_code == 200, r.text
    for _ in range(2):
        clock.advance(timedelta(days=7))
        settle(conveyor)
    assert len(mail.to("bo@example.com")) == 1
    skipped = [s for s in timeline(client, tenant, cid) if s["outcome"] == "skipped"]
    assert [s["node"] for s in skipped] == ["tips", "offer"]
    assert skipped[0]["reason"]["why"] == "not subscribed to newsletter (unsubscribed)"


def test_the_workspace_display_name_is_the_brand_in_templates(client, tenant, mail):
    cid = client.post("/contacts", headers=tenant.admin,
                      json={"email": "brand@example.com", "first_name": "Bo"}).json()["id"]

    def preview() -> str:
        r = client.post("/templates/welcome-1/preview", headers=tenant.admin,
                        json={"contact_id": cid})
        assert r.status_code == 200, r.text
        return r.json()["text"]

    assert "Thanks for subscribing to Acme Shop" in preview()  # the sender's name by default
    r = client.patch("/workspace/settings", headers=tenant.admin,
                     json={"display_name": "Acme Outdoor"})
    assert r.status_code == 200 and r.json()["settings"]["display_name"] == "Acme Outdoor"
    assert "Thanks for subscribing to Acme Outdoor" in preview()
    r = client.patch("/workspace/settings", headers=tenant.admin, json={"display_name": ""})
    assert r.status_code == 422 and r.json()["field"] == "display_name"
