"""Priority groups between automations: a contact inside one automation of a group is queued,
skipped or preempted when it qualifies for another, and every decision is in its history."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from conveyor.store.schema import outbox
from tests.support.flows import provide

GROUP = "promotions"


def automation(
    client, tenant, key, *, level=0, on_conflict=None, wait=True, tag=None
) -> dict[str, Any]:
    priority: dict[str, Any] = {"group": GROUP, "level": level}
    if on_conflict:
        priority["on_conflict"] = on_conflict
    nodes: list[dict[str, Any]] = [{"id": "first", "type": "send_email", "template": f"{key}-1"}]
    if wait:
        nodes += [
            {"id": "pause", "type": "wait", "for": "1 day"},
            {"id": "second", "type": "send_email", "template": f"{key}-2"},
        ]
    definition = {
        "key": key,
        "triggers": [{"tag_added": tag or key}],
        "entry": {"repeat": "every_time"},
        "priority": priority,
        "nodes": nodes,
    }
    provide(client, tenant.admin, definition)
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 200, r.text
    r = client.patch(f"/automations/{key}", headers=tenant.admin, json={"status": "active"})
    assert r.status_code == 200, r.text
    return definition


def contact(client, tenant, name) -> int:
    r = client.post(
        "/contacts", headers=tenant.admin, json={"external_id": name, "email": f"{name}@ex.com"}
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def enroll(client, tenant, key, cid) -> str:
    r = client.post(f"/automations/{key}/enroll", headers=tenant.admin, json={"contact_id": cid})
    assert r.status_code == 200, r.text
    return r.json()["result"]


def sent(client, tenant, cid) -> list[str]:
    items = client.get("/outbox", headers=tenant.admin, params={"contact": cid}).json()["items"]
    return sorted(m["template"] for m in items)


def events(client, tenant, cid, name) -> list[dict[str, Any]]:
    r = client.get(f"/contacts/{cid}/events", headers=tenant.admin, params={"name": name})
    return [e["properties"] for e in r.json()["items"]]


def timeline(client, tenant, cid) -> list[dict[str, Any]]:
    r = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin, params={"limit": 500})
    return r.json()["items"]


def test_queue_enters_when_the_first_finishes(client, tenant, conveyor, clock):
    automation(client, tenant, "spring", level=0)
    automation(client, tenant, "summer", level=5, wait=False)
    cid = contact(client, tenant, "ann")
    assert enroll(client, tenant, "spring", cid) == "entered"
    assert (
        enroll(client, tenant, "summer", cid) == "queued: inside spring (priority group promotions)"
    )
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["spring-1"]
    entered = [e for e in events(client, tenant, cid, "automation.entered") if e["queued"]]
    assert entered == [
        {
            "automation": "summer",
            "queued": True,
            "via": "manual",
            "because": "spring",
            "group": GROUP,
        }
    ]
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["spring-1", "spring-2", "summer-1"]


def test_one_event_two_automations_the_higher_level_goes_first(client, tenant, conveyor, clock):
    automation(client, tenant, "low", level=1, tag="promo")
    automation(client, tenant, "high", level=9, tag="promo")
    cid = contact(client, tenant, "bea")
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["promo"]})
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["high-1"]
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["high-1", "high-2", "low-1"]
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["high-1", "high-2", "low-1", "low-2"]


def test_skip_never_enters_and_says_why(client, tenant, conveyor, clock):
    automation(client, tenant, "spring")
    automation(client, tenant, "flash", level=3, on_conflict="skip", wait=False)
    cid = contact(client, tenant, "cat")
    assert enroll(client, tenant, "spring", cid) == "entered"
    # Through a trigger, as a contact usually arrives.
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["flash"]})
    conveyor.engine.run_until_idle()
    assert events(client, tenant, cid, "automation.entry_skipped") == [
        {"automation": "flash", "because": "spring", "group": GROUP}
    ]
    assert (
        enroll(client, tenant, "flash", cid) == "skipped: inside spring (priority group promotions)"
    )
    clock.advance(timedelta(days=2))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["spring-1", "spring-2"]
    assert client.get("/automations/flash/stats", headers=tenant.admin).json()["runs"] == {}
    # Outside the group's automations, it enters.
    assert enroll(client, tenant, "flash", cid) == "entered"


def test_preempt_ends_a_lower_run_and_a_lower_newcomer_queues(client, tenant, conveyor, clock):
    automation(client, tenant, "spring", level=0)
    automation(client, tenant, "vip", level=10, on_conflict="preempt")
    automation(client, tenant, "autumn", level=5, on_conflict="preempt", wait=False)
    cid = contact(client, tenant, "dan")
    assert enroll(client, tenant, "spring", cid) == "entered"
    conveyor.engine.run_until_idle()
    assert enroll(client, tenant, "vip", cid) == "entered"
    conveyor.engine.run_until_idle()
    ended = [s for s in timeline(client, tenant, cid) if s["automation"] == "spring"][0]
    assert ended["outcome"] == "ended" and ended["node"] == "pause", ended
    assert ended["reason"]["why"] == "preempted by vip (priority group promotions: level 10 > 0)"
    assert events(client, tenant, cid, "automation.exited") == [
        {"automation": "spring", "outcome": "ended", "because": "vip", "group": GROUP}
    ]
    assert client.get("/automations/spring/stats", headers=tenant.admin).json()["runs"] == {
        "ended": 1
    }
    # A lower level under preempt falls back to the queue.
    assert enroll(client, tenant, "autumn", cid) == "queued: inside vip (priority group promotions)"
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["autumn-1", "spring-1", "vip-1", "vip-2"]


def test_preempt_within_one_event(client, tenant, conveyor, clock):
    """Two automations start on one event in the same tick; the higher one still wins."""
    automation(client, tenant, "spring", level=0, tag="go")
    automation(client, tenant, "vip", level=10, on_conflict="preempt", tag="vip")
    cid = contact(client, tenant, "eli")
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["go", "vip"]})
    conveyor.engine.run_until_idle()
    clock.advance(timedelta(days=1))
    conveyor.engine.run_until_idle()
    assert sent(client, tenant, cid) == ["vip-1", "vip-2"]
    [step] = [s for s in timeline(client, tenant, cid) if s["automation"] == "spring"]
    assert (step["node"], step["outcome"]) == ("first", "ended")


def test_outbox_rows_carry_the_priority_level(client, tenant, conveyor):
    automation(client, tenant, "vip", level=10, wait=False)
    plain = {
        "key": "plain",
        "triggers": [{"tag_added": "plain"}],
        "nodes": [{"id": "hi", "type": "send_email", "template": "plain-1"}],
    }
    provide(client, tenant.admin, plain)
    r = client.post("/automations", headers=tenant.admin, json=plain)
    assert r.status_code == 200, r.text
    client.patch("/automations/plain", headers=tenant.admin, json={"status": "active"})
    cid = contact(client, tenant, "fox")
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["vip", "plain"]})
    conveyor.engine.run_until_idle()
    with conveyor.store.db.read_connection() as conn:
        rows = conn.execute(
            select(outbox.c.template, outbox.c.priority).where(outbox.c.contact_id == cid)
        ).all()
    assert sorted(map(tuple, rows)) == [("plain-1", 0), ("vip-1", 10)]


def test_bad_priority_names_the_field(client, tenant):
    definition = {
        "key": "bad",
        "triggers": [{"tag_added": "x"}],
        "priority": {"group": GROUP, "on_conflict": "bump"},
        "nodes": [{"id": "hi", "type": "send_email", "template": "x"}],
    }
    r = client.post("/automations", headers=tenant.admin, json=definition)
    assert r.status_code == 422 and r.json()["field"] == "priority.on_conflict", r.text
