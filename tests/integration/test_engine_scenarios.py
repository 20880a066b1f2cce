"""Scenarios 1, 3, 4 and 9's entry rule, end to end through the API with a simulated clock:
the automation files under examples/, asserting on the outbox and the timeline's reasons."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.support.flows import activate, example_templates, provide
from tests.support.flows import settle as settle_all
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "automations"


def apply(client, tenant, name, activate=True):
    definition = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    provide(client, tenant.admin, definition, example_templates())
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 200, r.text
    if activate:
        r = client.patch(
            f"/automations/{definition['key']}", headers=tenant.admin, json={"status": "active"}
        )
        assert r.status_code == 200, r.text
    return definition["key"]


def settle(conveyor):
    conveyor.engine.run_until_idle()


def contact_id(client, tenant, user):
    return client.get(
        "/contacts/lookup", headers=tenant.admin, params={"external_id": user}
    ).json()["id"]


def outbox(client, tenant, user):
    items = client.get(
        "/outbox", headers=tenant.admin, params={"contact": contact_id(client, tenant, user)}
    ).json()["items"]
    return [m["template"] for m in items]


def timeline(client, tenant, user):
    items = client.get(
        f"/contacts/{contact_id(client, tenant, user)}/timeline",
        headers=tenant.admin,
        params={"limit": 500},
    ).json()["items"]
    return list(reversed(items))


def track(client, tenant, user, event, **properties):
    r = client.post(
        "/v1/track",
        headers=tenant.write,
        json={"userId": user, "event": event, "properties": properties},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def lists(client, tenant):
    for key in ("newsletter", "loyal-customers"):
        client.post("/lists", headers=tenant.admin, json={"key": key})


def subscribe(client, tenant, user):
    r = client.post(
        "/contacts",
        headers=tenant.admin,
        json={"external_id": user, "email": f"{user}@example.com"},
    )
    cid = r.json()["id"] if r.status_code == 201 else contact_id(client, tenant, user)
    r = client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "subscribed"}
    )
    assert r.status_code == 200, r.text
    return cid


def test_scenario_1_welcome_series(client, tenant, conveyor, clock, lists):
    apply(client, tenant, "welcome-series")
    cid = subscribe(client, tenant, "ada")
    settle(conveyor)
    assert outbox(client, tenant, "ada") == ["welcome-1"]
    clock.advance(timedelta(days=6, hours=23))
    settle(conveyor)
    assert outbox(client, tenant, "ada") == ["welcome-1"]
    clock.advance(timedelta(hours=1))
    settle(conveyor)
    assert outbox(client, tenant, "ada") == ["welcome-1", "welcome-2"]
    clock.advance(timedelta(days=7))
    settle(conveyor)
    assert outbox(client, tenant, "ada") == ["welcome-1", "welcome-2", "welcome-3"]
    # Unsubscribing and subscribing again does not restart the series.
    client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "unsubscribed"}
    )
    client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "subscribed"}
    )
    clock.advance(timedelta(days=30))
    settle(conveyor)
    assert outbox(client, tenant, "ada") == ["welcome-1", "welcome-2", "welcome-3"]
    steps = [(s["node"], s["outcome"]) for s in timeline(client, tenant, "ada")]
    assert steps == [
        ("welcome", "queued"),
        ("first-week", "waiting"),
        ("first-week", "waited"),
        ("tips", "queued"),
        ("second-week", "waiting"),
        ("second-week", "waited"),
        ("offer", "queued"),
        # The second subscription matched the trigger: the timeline says why it did not enter.
        ("entry", "entry_skipped"),
    ]
    skipped = timeline(client, tenant, "ada")[-1]["reason"]
    assert skipped["why"] == "not entered: entered before (once per contact)"
    assert all(s["reason"] for s in timeline(client, tenant, "ada"))
    stats = client.get("/automations/welcome-series/stats", headers=tenant.admin).json()
    assert stats["runs"] == {"completed": 1}
    assert stats["nodes"]["offer"]["outcomes"] == {"queued": 1}


def test_scenario_3_first_purchase_or_loyal(client, tenant, conveyor, lists):
    apply(client, tenant, "first-purchase-or-loyal")
    track(client, tenant, "bob", "order_completed", total=20)
    settle(conveyor)
    assert outbox(client, tenant, "bob") == ["first-order-promo"]
    track(client, tenant, "bob", "order_completed", total=35)
    settle(conveyor)
    assert outbox(client, tenant, "bob") == ["first-order-promo"]
    c = client.get(f"/contacts/{contact_id(client, tenant, 'bob')}", headers=tenant.admin).json()
    assert c["lists"] == {"loyal-customers": "subscribed"}
    branches = [s for s in timeline(client, tenant, "bob") if s["node"] == "first-order"]
    assert [b["outcome"] for b in branches] == ["then", "else"]
    assert "= 1 times, needs eq 1" in branches[0]["reason"]["why"]
    assert "= 2 times, needs eq 1" in branches[1]["reason"]["why"]


def test_scenario_4_abandoned_cart(client, tenant, conveyor, clock):
    apply(client, tenant, "abandoned-cart")
    # Forgets the cart: two reminders, the first with the cart's items.
    track(client, tenant, "cara", "cart_updated", items=[{"sku": "A-1", "qty": 2}], total=40)
    settle(conveyor)
    clock.advance(timedelta(minutes=30))
    track(
        client, tenant, "cara", "cart_updated", items=[{"sku": "A-1", "qty": 3}], total=60
    )  # no second run
    settle(conveyor)
    assert outbox(client, tenant, "cara") == []
    clock.advance(timedelta(minutes=31))
    settle(conveyor)
    messages = client.get(
        "/outbox", headers=tenant.admin, params={"contact": contact_id(client, tenant, "cara")}
    ).json()["items"]
    assert [m["template"] for m in messages] == ["cart-reminder-1"]
    assert messages[0]["payload"]["trigger"]["items"] == [{"sku": "A-1", "qty": 2}]
    clock.advance(timedelta(days=1))
    settle(conveyor)
    assert outbox(client, tenant, "cara") == ["cart-reminder-1", "cart-reminder-2"]
    wait = next(
        s
        for s in timeline(client, tenant, "cara")
        if s["node"] == "wait-for-order" and s["outcome"] == "timeout"
    )
    assert wait["reason"]["timeout"] == "1 hour"

    # Orders within the hour: straight to the goal, no reminder.
    track(client, tenant, "dan", "cart_updated", items=[{"sku": "B-2"}])
    settle(conveyor)
    clock.advance(timedelta(minutes=20))
    track(client, tenant, "dan", "order_completed", total=15)
    settle(conveyor)
    clock.advance(timedelta(days=2))
    settle(conveyor)
    assert outbox(client, tenant, "dan") == []
    assert ("ordered", "goal_reached") in [
        (s["node"], s["outcome"]) for s in timeline(client, tenant, "dan")
    ]

    # Orders after the first reminder: jumps to the goal, no second reminder.
    track(client, tenant, "eve", "cart_updated", items=[{"sku": "C-3"}])
    settle(conveyor)
    clock.advance(timedelta(hours=2))
    settle(conveyor)
    track(client, tenant, "eve", "order_completed", total=15)
    settle(conveyor)
    clock.advance(timedelta(days=2))
    settle(conveyor)
    assert outbox(client, tenant, "eve") == ["cart-reminder-1"]
    events = client.get(
        f"/contacts/{contact_id(client, tenant, 'eve')}/events",
        headers=tenant.admin,
        params={"name": "automation.goal_reached"},
    ).json()["items"]
    assert events[0]["properties"] == {"automation": "abandoned-cart", "goal": "ordered"}


def test_scenario_9_onboarding_before_promotion(client, tenant, conveyor, clock, lists):
    apply(client, tenant, "onboarding")
    apply(client, tenant, "promotion")
    cid = subscribe(client, tenant, "fay")
    settle(conveyor)
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["promo-eligible"]})
    settle(conveyor)
    assert outbox(client, tenant, "fay") == ["onboarding-1"]
    clock.advance(timedelta(days=3))
    settle(conveyor)
    assert outbox(client, tenant, "fay") == [
        "onboarding-1",
        "onboarding-2",
        "spring-offer",
        "spring-sms",
    ]
    # Someone not in onboarding enters the promotion at once.
    other = client.post(
        "/contacts", headers=tenant.admin, json={"external_id": "gil", "email": "gil@example.com"}
    ).json()
    client.post(
        f"/contacts/{other['id']}/tags", headers=tenant.admin, json={"tags": ["promo-eligible"]}
    )
    settle(conveyor)
    assert outbox(client, tenant, "gil") == ["spring-offer", "spring-sms"]


def test_versions_lifecycle_and_manual_enrollment(client, tenant, conveyor, clock, lists):
    key = apply(client, tenant, "welcome-series")
    subscribe(client, tenant, "hal")
    settle(conveyor)
    definition = yaml.safe_load((EXAMPLES / "welcome-series.yaml").read_text())
    definition["nodes"][0]["template"] = "welcome-1b"
    provide(client, tenant.admin, definition)
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.json()["result"] == "new version" and r.json()["version"] == 2
    assert (
        client.post("/automations", headers=tenant.admin, json=definition).json()["result"]
        == "unchanged"
    )
    diff = client.get(f"/automations/{key}/diff", headers=tenant.admin).text
    assert "-  template: welcome-1" in diff and "+  template: welcome-1b" in diff
    subscribe(client, tenant, "ivy")
    settle(conveyor)
    assert outbox(client, tenant, "hal") == ["welcome-1"]  # stays on version 1
    assert outbox(client, tenant, "ivy") == ["welcome-1b"]
    client.patch(f"/automations/{key}", headers=tenant.admin, json={"status": "paused"})
    subscribe(client, tenant, "jon")
    settle(conveyor)
    assert outbox(client, tenant, "jon") == []
    r = client.post(
        f"/automations/{key}/enroll",
        headers=tenant.admin,
        json={"contact_id": contact_id(client, tenant, "jon")},
    )
    assert r.status_code == 409
    client.patch(f"/automations/{key}", headers=tenant.admin, json={"status": "active"})
    r = client.post(
        f"/automations/{key}/enroll",
        headers=tenant.admin,
        json={"contact_id": contact_id(client, tenant, "jon")},
    )
    assert r.json() == {"result": "entered"}
    r = client.post(
        f"/automations/{key}/enroll",
        headers=tenant.admin,
        json={"contact_id": contact_id(client, tenant, "jon")},
    )
    assert r.json()["result"].startswith("skipped")
    settle(conveyor)
    assert outbox(client, tenant, "jon") == ["welcome-1b"]
    assert (
        client.patch(
            f"/automations/{key}", headers=tenant.admin, json={"status": "draft"}
        ).status_code
        == 409
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["nodes"][1].update(type="teleport"), "nodes.1.type"),
        (lambda d: d["nodes"][1].update(next="nowhere"), "nodes.1"),
        (
            lambda d: (
                d["nodes"][4].update(next="end"),
                d["nodes"].append({"id": "orphan", "type": "send_email", "template": "x"}),
            ),
            "nodes.5",
        ),
        (lambda d: d["nodes"][1].pop("for"), "nodes.1.for"),
        (
            lambda d: d["nodes"].insert(
                0, {"id": "check", "type": "if", "condition": {"tag": "x"}, "then": "welcome"}
            ),
            "nodes.0.else",
        ),
        (
            lambda d: (
                d["nodes"][4].update(next="loop-a"),
                d["nodes"].extend(
                    [
                        {"id": "loop-a", "type": "add_tag", "tag": "a", "next": "loop-b"},
                        {"id": "loop-b", "type": "add_tag", "tag": "b", "next": "loop-a"},
                    ]
                ),
            ),
            "nodes.5",
        ),
        (lambda d: d.update(triggers=[{"list_subscribed": ""}]), "triggers.0.list_subscribed"),
        (lambda d: d["nodes"][0].update(condition={"tag": "x"}), "nodes.0.condition"),
    ],
)
def test_bad_automations_name_the_node(client, tenant, change, field):
    definition = yaml.safe_load((EXAMPLES / "welcome-series.yaml").read_text())
    change(definition)
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field, r.json()


def test_a_segment_an_automation_uses_cannot_be_deleted(client, tenant):
    client.post(
        "/segments", headers=tenant.admin, json={"key": "vips", "condition": {"tag": "vip"}}
    )
    definition = {
        "key": "vip-welcome",
        "triggers": [{"segment_entered": "vips"}],
        "nodes": [{"id": "hi", "type": "send_email", "template": "vip"}],
    }
    provide(client, tenant.admin, definition)
    assert client.post("/automations", headers=tenant.admin, json=definition).status_code == 200
    r = client.delete("/segments/vips", headers=tenant.admin)
    assert r.status_code == 409 and "vip-welcome" in r.json()["detail"]
    client.patch("/automations/vip-welcome", headers=tenant.admin, json={"status": "archived"})
    assert client.delete("/segments/vips", headers=tenant.admin).status_code == 204


def test_inbound_webhook_trigger(client, tenant, conveyor):
    definition = {
        "key": "from-crm",
        "triggers": [{"webhook": True}],
        "nodes": [
            {"id": "mark", "type": "set_field", "field": "crm_stage", "value": "{{ event.stage }}"}
        ],
    }
    client.post("/fields", headers=tenant.admin, json={"key": "crm_stage", "type": "text"})
    client.post("/automations", headers=tenant.admin, json=definition)
    client.patch("/automations/from-crm", headers=tenant.admin, json={"status": "active"})
    url = client.get("/automations/from-crm/webhook", headers=tenant.admin).json()["url"]
    path = url.split("://", 1)[1].split("/", 1)[1]
    r = client.post(
        f"/{path}",
        json={"email": "kim@example.com", "stage": "Qualified"},
        headers={"Idempotency-Key": "d-1"},
    )
    assert r.status_code == 202, r.text
    client.post(
        f"/{path}",
        json={"email": "kim@example.com", "stage": "Qualified"},
        headers={"Idempotency-Key": "d-1"},
    )
    forged = path[:-1] + ("1" if path[-1] == "0" else "0")
    assert client.post(f"/{forged}", json={"email": "x@example.com"}).status_code == 404
    assert client.post(f"/{path}", json={"stage": "Won"}).status_code == 422
    settle(conveyor)
    kim = client.get(
        "/contacts/lookup", headers=tenant.admin, params={"email": "kim@example.com"}
    ).json()
    assert kim["fields"] == {"crm_stage": "Qualified"}
    assert client.get("/automations/from-crm/stats", headers=tenant.admin).json()["runs"] == {
        "completed": 1
    }


def test_date_trigger_fires_on_the_contacts_own_day_at_their_local_time(
    client, tenant, conveyor, clock
):
    client.post("/fields", headers=tenant.admin, json={"key": "birth_date", "type": "date"})
    client.post("/fields", headers=tenant.admin, json={"key": "renewal", "type": "date"})
    birthday = {
        "key": "birthday",
        "triggers": [{"date": {"field": "birth_date", "yearly": True, "at": "09:00"}}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "card", "type": "send_email", "template": "birthday"}],
    }
    renewal = {
        "key": "renewal",
        "triggers": [{"date": {"field": "renewal", "offset": "-3 days", "at": "08:00"}}],
        "nodes": [{"id": "remind", "type": "send_email", "template": "renewal"}],
    }
    for definition in (birthday, renewal):
        provide(client, tenant.admin, definition, example_templates())
        assert (
            client.post("/automations", headers=tenant.admin, json=definition).status_code == 200
        ), definition
        client.patch(
            f"/automations/{definition['key']}", headers=tenant.admin, json={"status": "active"}
        )
    # The clock says 2026-01-05 09:00 UTC: 10:00 in Warsaw, 01:00 in Los Angeles.
    for user, zone, day in (
        ("waw", "Europe/Warsaw", "1990-01-05"),
        ("lax", "America/Los_Angeles", "1985-01-05"),
        ("later", "Europe/Warsaw", "1990-01-06"),
    ):
        client.post(
            "/contacts",
            headers=tenant.admin,
            json={
                "external_id": user,
                "email": f"{user}@example.com",
                "timezone": zone,
                "fields": {"birth_date": day},
            },
        )
    client.post(
        "/contacts",
        headers=tenant.admin,
        json={
            "external_id": "sub",
            "email": "sub@example.com",
            "timezone": "UTC",
            "fields": {"renewal": "2026-01-08"},
        },
    )
    settle(conveyor)
    assert outbox(client, tenant, "waw") == ["birthday"] and outbox(client, tenant, "lax") == []
    assert outbox(client, tenant, "sub") == ["renewal"]  # three days before 8 January, after 08:00
    clock.advance(timedelta(hours=8))  # 09:00 in Los Angeles
    settle(conveyor)
    assert outbox(client, tenant, "lax") == ["birthday"] and outbox(client, tenant, "waw") == [
        "birthday"
    ]
    clock.advance(timedelta(days=1))
    settle(conveyor)
    assert outbox(client, tenant, "later") == ["birthday"] and outbox(client, tenant, "sub") == [
        "renewal"
    ]
    clock.advance(timedelta(days=364))
    settle(conveyor)
    assert outbox(client, tenant, "waw") == ["birthday", "birthday"]
    r = client.post(
        "/automations",
        headers=tenant.admin,
        json={**birthday, "key": "bad", "triggers": [{"date": {"field": "renewal_day"}}]},
    )
    assert r.status_code == 422 and r.json()["field"] == "triggers.0.date.field"


def test_a_missing_template_is_refused_at_save_and_one_still_needed_cannot_be_deleted(
    client, tenant, conveyor, clock
):
    definition = {
        "key": "two-mails",
        "triggers": [{"event": "signed_up"}],
        "nodes": [
            {"id": "first", "type": "send_email", "template": "hello"},
            {"id": "pause", "type": "wait", "for": "1 day"},
            {"id": "second", "type": "send_email", "template": "follow-up"},
        ],
    }
    # Naming templates the workspace lacks: refused at save, each field named, nothing stored.
    for path in ("/automations/validate", "/automations"):
        r = client.post(path, headers=tenant.admin, json=definition)
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "nodes.0.template"
        assert [e["field"] for e in r.json()["errors"]] == ["nodes.0.template", "nodes.2.template"]
    assert client.get("/automations/two-mails", headers=tenant.admin).status_code == 404
    provide(client, tenant.admin, definition)
    sink = SmtpSink().start()
    try:
        r = client.put(
            "/channels/email",
            headers=tenant.admin,
            json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url},
        )
        assert r.status_code == 200, r.text
        activate(client, tenant, definition)
        # A template the current version uses cannot be deleted.
        r = client.delete("/templates/follow-up", headers=tenant.admin)
        assert r.status_code == 409 and "two-mails" in r.json()["detail"], r.text
        r = client.post(
            "/contacts",
            headers=tenant.admin,
            json={"external_id": "ann", "email": "ann@example.com"},
        )
        assert r.status_code == 201, r.text
        track(client, tenant, "ann", "signed_up")
        settle_all(conveyor)
        # Version 2 sends another follow-up; ann stays on version 1, which still names the old
        # one: while she is inside, it cannot be deleted (her second message would fail).
        changed = {
            **definition,
            "nodes": [
                *definition["nodes"][:2],
                {"id": "second", "type": "send_email", "template": "follow-up-2"},
            ],
        }
        provide(client, tenant.admin, changed)
        r = client.post("/automations", headers=tenant.admin, json=changed)
        assert r.status_code == 200 and r.json()["version"] == 2, r.text
        r = client.delete("/templates/follow-up", headers=tenant.admin)
        assert r.status_code == 409 and "two-mails" in r.json()["detail"], r.text
        clock.advance(timedelta(days=1))
        settle_all(conveyor)
        # ann has finished version 1: nothing needs the old follow-up any more.
        assert client.delete("/templates/follow-up", headers=tenant.admin).status_code == 204
    finally:
        sink.stop()
    items = client.get(
        "/outbox", headers=tenant.admin, params={"contact": contact_id(client, tenant, "ann")}
    ).json()["items"]
    by_template = {m["template"]: m for m in items}
    assert by_template["hello"]["status"] == "sent"
    assert by_template["follow-up"]["status"] == "sent"
