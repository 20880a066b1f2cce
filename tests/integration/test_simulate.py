"""Backtests through the service and the API: a simulation from the log yields what the live
engine did (entries, steps with their reasons, messages), and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from conveyor.services.simulate import Scope
from tests.support.flows import activate, save_template, settle
from tests.support.simulation import (
    live_messages,
    live_paths,
    simulated_messages,
    simulated_paths,
)
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "automations"


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put(
        "/channels/email",
        headers=tenant.admin,
        json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url},
    )
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def _templates(client, tenant, *keys):
    for key in keys:
        save_template(
            client,
            tenant,
            {"key": key, "channel": "email", "content": {"subject": key, "text": key}},
        )


def _contacts(client, tenant, *users):
    for user in users:
        r = client.post(
            "/contacts",
            headers=tenant.admin,
            json={"external_id": user, "email": f"{user}@example.com"},
        )
        assert r.status_code == 201, r.text


def _written(conveyor):
    with conveyor.store.read() as tx:
        ws = tx.workspaces.all()[0].id
        return {
            "events": tx.events.position_at(ws, datetime.max.replace(tzinfo=UTC)),
            "outbox": len(tx.messages.page(ws, limit=10_000)),
            "sent": len(tx.messages.page(ws, status="sent", limit=10_000)),
            "runs": sorted(
                r.id
                for r in tx.automations.of_contacts(range(1, 10), ("active", "queued", "finished"))
            ),
        }


def _definition(name):
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def _track(client, tenant, user, event, **properties):
    r = client.post(
        "/v1/track",
        headers=tenant.write,
        json={"userId": user, "event": event, "properties": properties},
    )
    assert r.status_code == 200, r.text


def _id(client, tenant, user):
    r = client.get("/contacts/lookup", headers=tenant.admin, params={"external_id": user})
    return r.json()["id"]


def test_a_backtest_of_the_abandoned_cart_equals_what_ran_live(
    client, tenant, conveyor, clock, smtp
):
    start = clock.now()
    _templates(client, tenant, "cart-reminder-1", "cart-reminder-2", "promo")
    r = client.put(
        "/send-policy",
        headers=tenant.admin,
        json={"caps": {"email": [{"max": 1, "per": "16 hours"}]}},
    )
    assert r.status_code == 200, r.text
    activate(client, tenant, _definition("abandoned-cart"))
    activate(
        client,
        tenant,
        {
            "key": "promo",
            "triggers": [{"event": "order_completed"}],
            "nodes": [
                {"id": "wait", "type": "wait", "for": "2 hours"},
                {"id": "offer", "type": "send_email", "template": "promo"},
            ],
        },
    )
    _contacts(client, tenant, "ada", "bob", "cy")
    clock.advance(timedelta(minutes=1))
    plan = {
        0: [("ada", "cart_updated"), ("bob", "cart_updated"), ("cy", "cart_updated")],
        1: [("bob", "order_completed")],
        30: [("cy", "order_completed")],
        50: [("ada", "cart_updated")],
    }
    for hour in range(72):
        for user, event in plan.get(hour, []):
            _track(client, tenant, user, event, total=10)
        settle(conveyor)
        clock.advance(timedelta(hours=1))
    users = [_id(client, tenant, u) for u in ("ada", "bob", "cy")]
    before = _written(conveyor)
    report = conveyor.simulator.backtest(
        tenant.workspace, Scope(with_active=True, watch=None), start, clock.now()
    )
    assert _written(conveyor) == before  # nothing written, nothing sent
    assert len(smtp.messages) == before["sent"]
    assert simulated_paths(report, users) == live_paths(conveyor, tenant.workspace.id, users)
    assert simulated_messages(report, users) == live_messages(conveyor, tenant.workspace.id, users)
    tally = report.tallies["abandoned-cart"]
    assert sum(tally.entered.values()) == 4
    assert tally.goals == {"ordered": 1}  # bob; cy ordered after the reminders ended
    # The cap held the promo back, in the simulation as it did live, and it says why.
    promo = report.tallies["promo"]
    assert promo.policy == {("defer", "email cap 1 per 16 hours"): 1}
    assert report.collisions == {("promo", "abandoned-cart"): 1}


def _history(client, tenant, clock, plan, hours):
    """Tracked events hour by hour (nothing active: the log is all there is)."""
    start = clock.now()
    for hour in range(hours):
        for user, event in plan.get(hour, []):
            _track(client, tenant, user, event, total=10)
        clock.advance(timedelta(hours=1))
    return start


def test_the_api_backtests_a_draft_and_shows_a_contacts_path(client, tenant, clock):
    _contacts(client, tenant, "ada", "bob")
    start = _history(
        client,
        tenant,
        clock,
        {2: [("ada", "cart_updated"), ("bob", "cart_updated")], 3: [("bob", "order_completed")]},
        60,
    )
    ada = _id(client, tenant, "ada")
    r = client.post(
        "/automations/simulate",
        headers=tenant.admin,
        json={
            "definition": _definition("abandoned-cart"),
            "from": start.isoformat(),
            "contact": ada,
        },
    )
    assert r.status_code == 200, r.text
    report = r.json()
    cart = report["automations"]["abandoned-cart"]
    assert cart["entries"] == 2 and cart["goals"] == {"ordered": 1} and cart["conversion"] == 0.5
    assert cart["nodes"]["reminder"] == {"queued": 1}
    assert cart["messages_per_day"] and cart["messages"]["sent"] == 2
    assert report["messages_per_contact"] == {"0": 1, "2": 1}  # bob ordered; ada got both
    steps = [(s["node"], s["outcome"]) for s in report["contact"]["steps"]]
    assert steps == [
        ("wait-for-order", "waiting"),
        ("wait-for-order", "timeout"),
        ("reminder", "queued"),
        ("one-day", "waiting"),
        ("one-day", "waited"),
        ("second-reminder", "queued"),
    ]
    assert report["contact"]["steps"][0]["reason"]["why"].startswith("order_completed since entry")
    # A draft is not stored by simulating it, and nothing ran.
    assert client.get("/automations/abandoned-cart", headers=tenant.admin).status_code == 404
    r = client.post(
        "/automations/simulate",
        headers=tenant.admin,
        json={
            "definition": {
                "key": "x",
                "triggers": [{"event": "a"}],
                "nodes": [{"id": "n", "type": "wait"}],
            }
        },
    )
    assert r.status_code == 422 and r.json()["field"].startswith("nodes.0")
    r = client.post(
        "/automations/simulate",
        headers=tenant.admin,
        json={"definition": _definition("abandoned-cart"), "from": "2099-01-01"},
    )
    assert r.status_code == 422 and r.json()["field"] == "from"


def test_a_segment_is_taken_as_it_was_at_the_start_and_a_sample_is_a_sample(client, tenant, clock):
    _contacts(client, tenant, "ada", "bob", "cy")
    ada, bob = _id(client, tenant, "ada"), _id(client, tenant, "bob")
    client.post(f"/contacts/{ada}/tags", headers=tenant.admin, json={"tags": ["vip"]})
    r = client.post(
        "/segments",
        headers=tenant.admin,
        json={"key": "vips", "name": "VIPs", "condition": {"tag": "vip"}},
    )
    assert r.status_code in (200, 201), r.text
    clock.advance(timedelta(minutes=5))
    start = clock.now()
    # bob becomes a VIP only during the period; ada stops being one.
    client.post(f"/contacts/{bob}/tags", headers=tenant.admin, json={"tags": ["vip"]})
    client.delete(f"/contacts/{ada}/tags/vip", headers=tenant.admin)
    _history(client, tenant, clock, {1: [(u, "cart_updated") for u in ("ada", "bob", "cy")]}, 30)

    def backtest(**extra):
        r = client.post(
            "/automations/simulate",
            headers=tenant.admin,
            json={"definition": _definition("abandoned-cart"), "from": start.isoformat(), **extra},
        )
        assert r.status_code == 200, r.text
        return r.json()

    assert backtest()["automations"]["abandoned-cart"]["entries"] == 3
    vips = backtest(segment="vips", contact=ada)
    assert vips["automations"]["abandoned-cart"]["entries"] == 1 and vips["contacts"] == 1
    assert vips["contact"]["steps"]  # ada, who was a VIP at the start, not bob
    sampled = backtest(sample=2)
    assert sampled["automations"]["abandoned-cart"]["entries"] == 2
    assert "a random sample of 2 contacts" in sampled["notes"]
    r = client.post(
        "/automations/simulate",
        headers=tenant.admin,
        json={"definition": _definition("abandoned-cart"), "segment": "nope"},
    )
    assert r.status_code == 404


def test_one_contact_walks_through_a_draft_with_injected_events(client, tenant):
    _contacts(client, tenant, "ada")
    ada = _id(client, tenant, "ada")
    draft = _definition("abandoned-cart")

    def walk(events):
        r = client.post(
            f"/contacts/{ada}/simulate",
            headers=tenant.admin,
            json={"definition": draft, "events": events, "days": 3},
        )
        assert r.status_code == 200, r.text
        return [(s["node"], s["outcome"]) for s in r.json()["contact"]["steps"]], r.json()

    ordered, _ = walk(
        [{"at": "now", "event": "cart_updated"}, {"at": "30 minutes", "event": "order_completed"}]
    )
    assert ordered == [("wait-for-order", "waiting"), ("ordered", "goal_reached")]
    forgot, report = walk([{"at": "1 hour", "event": "cart_updated"}])
    assert forgot[-1] == ("second-reminder", "queued")
    at = {s["node"] + ":" + s["outcome"]: s["at"] for s in report["contact"]["steps"]}
    assert at["second-reminder:queued"] > at["reminder:queued"]  # a day later: time skipped
    assert [m["template"] for m in report["contact"]["messages"]] == [
        "cart-reminder-1",
        "cart-reminder-2",
    ]
    r = client.post(
        "/contacts/999999/simulate", headers=tenant.admin, json={"definition": draft, "events": []}
    )
    assert r.status_code == 404
    r = client.post(
        f"/contacts/{ada}/simulate",
        headers=tenant.admin,
        json={"definition": draft, "events": [{"at": "soon", "event": "x"}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "events.0.at"


def test_a_made_up_contact_walks_through_a_draft(client, tenant):
    r = client.post("/fields", headers=tenant.admin, json={"key": "plan", "type": "text"})
    assert r.status_code == 201, r.text
    draft = {
        "key": "upgrade",
        "triggers": [{"event": "visited_pricing"}],
        "nodes": [
            {
                "id": "pro",
                "type": "if",
                "condition": {"field": "plan", "op": "eq", "value": "pro"},
                "then": "thanks",
                "else": "pitch",
            },
            {"id": "pitch", "type": "send_email", "template": "go-pro", "next": "end"},
            {"id": "thanks", "type": "add_tag", "tag": "happy"},
        ],
    }

    def walk(contact):
        r = client.post(
            "/automations/try",
            headers=tenant.admin,
            json={
                "definition": draft,
                "contact": contact,
                "events": [{"at": "1 day", "event": "visited_pricing"}],
            },
        )
        assert r.status_code == 200, r.text
        return r.json()["contact"]

    pro = walk({"email": "p@example.com", "fields": {"plan": "pro"}})
    assert [(s["node"], s["outcome"]) for s in pro["steps"]] == [
        ("pro", "then"),
        ("thanks", "done"),
    ]
    free = walk({"email": "f@example.com"})
    assert [(s["node"], s["outcome"]) for s in free["steps"]] == [
        ("pro", "else"),
        ("pitch", "queued"),
    ]
    assert free["messages"][0]["template"] == "go-pro" and free["id"] == -1
    r = client.post(
        "/automations/try",
        headers=tenant.admin,
        json={"definition": draft, "contact": {"fields": {"nope": 1}}},
    )
    assert r.status_code == 422 and r.json()["field"] == "contact.fields.nope"
    # Nothing was stored: no contact, no automation.
    assert client.get("/contacts", headers=tenant.admin).json()["items"] == []


def test_the_forecast_names_the_automations_that_collide(client, tenant, clock):
    client.put(
        "/send-policy",
        headers=tenant.admin,
        json={"caps": {"email": [{"max": 1, "per": "16 hours"}]}},
    )
    _templates(client, tenant, "welcome-1", "upsell-1", "quiet-1")
    for key in ("welcome", "upsell", "quiet"):
        trigger = "signed_up" if key != "quiet" else "never_happens"
        activate(
            client,
            tenant,
            {
                "key": key,
                "triggers": [{"event": trigger}],
                "nodes": [{"id": "mail", "type": "send_email", "template": f"{key}-1"}],
            },
        )
    _contacts(client, tenant, "ada", "bob", "cy")
    _history(
        client,
        tenant,
        clock,
        {5: [("ada", "signed_up"), ("bob", "signed_up")], 30: [("cy", "signed_up")]},
        72,
    )
    r = client.post("/automations/forecast", headers=tenant.admin, json={"days": 7})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["collisions"] == [{"held_back": "welcome", "by": "upsell", "messages": 3}]
    assert report["capped"] == {"email cap 1 per 16 hours": 3}
    assert report["automations"]["quiet"]["entries"] == 0
    # Deferred, not lost: each got both within the week.
    assert report["messages_per_contact_week"] == {"2": 3}
    assert report["automations"]["welcome"]["policy"] == [
        {"action": "defer", "rule": "email cap 1 per 16 hours", "decisions": 3}
    ]
