"""Automation membership in conditions, through the API with a simulated clock: segments that
follow contacts into and through an automation, and a run that waits for another to finish."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.support.flows import example_templates, provide

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "automations"


def apply(client, tenant, definition):
    provide(client, tenant.admin, definition, example_templates())
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 200, r.text
    r = client.patch(
        f"/automations/{definition['key']}", headers=tenant.admin, json={"status": "active"}
    )
    assert r.status_code == 200, r.text


def onboarding():
    return yaml.safe_load((EXAMPLES / "onboarding.yaml").read_text())


def segment(client, tenant, key, condition):
    r = client.post("/segments", headers=tenant.admin, json={"key": key, "condition": condition})
    assert r.status_code == 201, r.text


def members(client, tenant, key):
    items = client.get(f"/segments/{key}/members", headers=tenant.admin).json()["items"]
    return [c["external_id"] for c in items]


def subscribe(client, tenant, user):
    r = client.post(
        "/contacts", headers=tenant.admin, json={"external_id": user, "email": f"{user}@x.org"}
    )
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "subscribed"}
    )
    assert r.status_code == 200, r.text
    return cid


@pytest.fixture
def newsletter(client, tenant):
    assert client.post("/lists", headers=tenant.admin, json={"key": "newsletter"}).is_success


def test_a_segment_of_who_completed_onboarding_gains_the_contact_when_it_finishes(
    client, tenant, conveyor, clock, newsletter
):
    apply(client, tenant, onboarding())
    segment(
        client, tenant, "completed-onboarding", {"automation": "onboarding", "status": "completed"}
    )
    segment(client, tenant, "in-onboarding", {"automation": "onboarding"})
    segment(
        client,
        tenant,
        "recently-onboarded",
        {"automation": "onboarding", "status": "finished", "within": "7 days"},
    )
    cid = subscribe(client, tenant, "ada")
    conveyor.engine.run_until_idle()
    assert members(client, tenant, "in-onboarding") == ["ada"]
    assert members(client, tenant, "completed-onboarding") == []

    clock.advance(timedelta(days=3))  # onboarding's wait ends: it sends the last email, done
    conveyor.engine.run_until_idle()
    assert members(client, tenant, "completed-onboarding") == ["ada"]
    assert members(client, tenant, "in-onboarding") == []
    assert members(client, tenant, "recently-onboarded") == ["ada"]
    log = client.get(f"/contacts/{cid}/events", headers=tenant.admin, params={"limit": 100})
    moves = [
        (e["name"], e["properties"]["segment"])
        for e in log.json()["items"]
        if e["name"].startswith("segment.")
    ]
    assert ("segment.entered", "completed-onboarding") in moves
    assert ("segment.exited", "in-onboarding") in moves
    why = client.get(
        "/segments/completed-onboarding/explain", headers=tenant.admin, params={"contact": cid}
    ).json()
    assert why["member"] is True
    assert why["explanation"]["why"] == "automation onboarding completed = 1 times, needs gte 1"

    # A window lets the clock take members away; the sweep does it.
    clock.advance(timedelta(days=8))
    conveyor.segments.sweep()
    assert members(client, tenant, "recently-onboarded") == []
    assert members(client, tenant, "completed-onboarding") == ["ada"]


def test_a_run_waiting_for_another_automation_wakes_when_that_one_completes(
    client, tenant, conveyor, clock, newsletter
):
    apply(client, tenant, onboarding())
    apply(
        client,
        tenant,
        {
            "key": "after-onboarding",
            "triggers": [{"list_subscribed": "newsletter"}],
            "nodes": [
                {
                    "id": "until-onboarded",
                    "type": "wait_until",
                    "condition": {"automation": "onboarding", "status": "completed"},
                    "timeout": "30 days",
                },
                {"id": "mark", "type": "add_tag", "tag": "onboarded"},
            ],
        },
    )
    cid = subscribe(client, tenant, "bob")
    conveyor.engine.run_until_idle()
    clock.advance(timedelta(days=2))
    conveyor.engine.run_until_idle()
    assert "onboarded" not in client.get(f"/contacts/{cid}", headers=tenant.admin).json()["tags"]
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert "onboarded" in client.get(f"/contacts/{cid}", headers=tenant.admin).json()["tags"]
    steps = client.get(
        f"/contacts/{cid}/timeline", headers=tenant.admin, params={"limit": 100}
    ).json()["items"]
    waited = [s for s in steps if s["node"] == "until-onboarded" and s["outcome"] != "waiting"]
    assert len(waited) == 1
    assert "automation onboarding completed = 1 times" in str(waited[0]["reason"])


def test_bad_automation_predicates_name_the_node(client, tenant):
    apply(client, tenant, {**onboarding(), "triggers": [{"manual": True}]})
    cases = [
        ({"automation": "nope"}, "condition.automation"),
        (
            {"all": [{"tag": "a"}, {"automation": "onboarding", "status": "done"}]},
            "condition.all.1.status",
        ),
        ({"automation": "onboarding", "status": "exited", "goal": "g"}, "condition.goal"),
        ({"automation": "onboarding", "within": "a while"}, "condition.within"),
        ({"automation": "onboarding", "since": "7 days"}, "condition.since"),
    ]
    for condition, field in cases:
        r = client.post(
            "/segments", headers=tenant.admin, json={"key": "s", "condition": condition}
        )
        assert r.status_code == 422, (condition, r.text)
        assert r.json()["field"] == field, (condition, r.json())
    # Inside an automation the same check applies, naming the node.
    r = client.post(
        "/automations",
        headers=tenant.admin,
        json={
            "key": "x",
            "triggers": [{"manual": True}],
            "nodes": [
                {
                    "id": "if",
                    "type": "if",
                    "condition": {"automation": "nope"},
                    "then": "end",
                    "else": "end",
                }
            ],
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["field"].endswith("condition.automation"), r.json()


def test_tracked_look_alikes_neither_count_nor_stop_the_log(client, tenant, conveyor):
    apply(client, tenant, {**onboarding(), "triggers": [{"manual": True}]})
    segment(
        client, tenant, "completed-onboarding", {"automation": "onboarding", "status": "completed"}
    )
    for event, properties in [
        ("automation.completed", {"automation": "onboarding", "outcome": "completed"}),
        ("automation.completed", {"automation": ["onboarding"], "outcome": "completed"}),
        ("segment.entered", {"segment": ["completed-onboarding"]}),
        ("field.changed", {"field": {"name": "email"}}),
    ]:
        r = client.post(
            "/v1/track",
            headers=tenant.write,
            json={"userId": "eve", "event": event, "properties": properties},
        )
        assert r.status_code == 200, r.text
    conveyor.engine.run_until_idle()  # the segments' and the engine's consumers get through
    assert members(client, tenant, "completed-onboarding") == []
