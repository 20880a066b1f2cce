"""Segments through the API: scenarios 5 and 11, errors that name the node, explanations, and
membership that follows events and the clock."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from conveyor.domain.fields import format_datetime

GOOD_CUSTOMERS = {
    "event": "order_completed",
    "where": [{"property": "items", "op": "gte", "value": 1}],
    "count": {"gte": 3},
    "within": "90 days",
}


def track(client, tenant, user, event, at, **properties):
    r = client.post(
        "/v1/track",
        headers=tenant.write,
        json={
            "userId": user,
            "event": event,
            "properties": properties,
            "timestamp": format_datetime(at),
        },
    )
    assert r.status_code == 200, r.text


def identify(client, tenant, user, **traits):
    r = client.post("/v1/identify", headers=tenant.write, json={"userId": user, "traits": traits})
    assert r.status_code == 200, r.text


def contact_id(client, tenant, user):
    return client.get(
        "/contacts/lookup", headers=tenant.admin, params={"external_id": user}
    ).json()["id"]


def member_users(client, tenant, key):
    items = client.get(
        f"/segments/{key}/members", headers=tenant.admin, params={"limit": 500}
    ).json()["items"]
    return sorted(c["external_id"] for c in items)


def test_scenario_5_good_customers(client, tenant, conveyor, clock):
    now = clock.now()
    for user, orders in {
        "loyal": [5, 20, 40],
        "old": [100, 120, 200],
        "empty": [1, 2, 3],
        "two": [1, 2],
        "mixed": [3, 30, 60, 95],
    }.items():
        for days in orders:
            items = 0 if user == "empty" else 2
            track(client, tenant, user, "order_completed", now - timedelta(days=days), items=items)
    r = client.post(
        "/segments",
        headers=tenant.admin,
        json={"key": "good-customers", "name": "Good customers", "condition": GOOD_CUSTOMERS},
    )
    assert r.status_code == 201, r.text
    assert r.json()["time_based"] is True
    assert member_users(client, tenant, "good-customers") == ["loyal", "mixed"]
    assert client.get("/segments/good-customers/count", headers=tenant.admin).json() == {"count": 2}
    # A contact who reaches three orders later is enrolled when it enters.
    track(client, tenant, "two", "order_completed", now, items=1)
    while conveyor.segments.process_log():
        pass
    assert member_users(client, tenant, "good-customers") == ["loyal", "mixed", "two"]
    entered = client.get(
        f"/contacts/{contact_id(client, tenant, 'two')}/events",
        headers=tenant.admin,
        params={"name": "segment.entered"},
    ).json()["items"]
    assert [e["properties"] for e in entered] == [{"segment": "good-customers"}]
    # Time alone moves people out: 36 days on, "mixed" has only 2 orders in 90 days.
    clock.advance(timedelta(days=36))
    assert conveyor.segments.sweep() >= 1
    assert member_users(client, tenant, "good-customers") == ["loyal", "two"]
    exited = client.get(
        f"/contacts/{contact_id(client, tenant, 'mixed')}/events",
        headers=tenant.admin,
        params={"name": "segment.exited"},
    ).json()["items"]
    assert len(exited) == 1


def test_scenario_11_inactive_contacts(client, tenant, clock):
    now = clock.now()
    for user in ("sleeper", "reader", "clicker", "newbie"):
        identify(client, tenant, user, email=f"{user}@example.com")
    clock.advance(timedelta(days=200))
    now = clock.now()
    track(client, tenant, "reader", "email.opened", now - timedelta(days=10), template="weekly")
    track(client, tenant, "clicker", "email.clicked", now - timedelta(days=100), url="https://x.co")
    track(client, tenant, "sleeper", "email.opened", now - timedelta(days=190), template="weekly")
    client.post(
        "/contacts",
        headers=tenant.admin,
        json={"external_id": "fresh", "email": "fresh@example.com"},
    )
    inactive = {
        "all": [
            {"field": "created_at", "op": "more_than_ago", "value": "180 days"},
            {"not": {"message": "opened", "within": "180 days"}},
            {"not": {"message": "clicked", "within": "180 days"}},
        ]
    }
    r = client.post(
        "/segments", headers=tenant.admin, json={"key": "inactive", "condition": inactive}
    )
    assert r.status_code == 201, r.text
    assert member_users(client, tenant, "inactive") == ["newbie", "sleeper"]


def test_bad_definitions_name_the_node(client, tenant):
    client.post("/fields", headers=tenant.admin, json={"key": "age", "type": "number"})
    cases = [
        (
            {"all": [{"tag": "vip"}, {"field": "age", "op": "contains", "value": "x"}]},
            "condition.all.1.op",
        ),
        ({"any": []}, "condition.any"),
        ({"field": "shoe_size", "op": "eq", "value": 1}, "condition.field"),
        ({"event": "x", "count": {"gte": -1}}, "condition.count.gte"),
        (
            {"event": "x", "where": [{"property": "items", "op": "gt", "value": "three"}]},
            "condition.where.0.value",
        ),
        ({"event": "x", "within": "a fortnight"}, "condition.within"),
        ({"list": "nope"}, "condition.list"),
        ({"segment": "nope"}, "condition.segment"),
        ({"colour": "red"}, "condition"),
        ({"not": {"tag": "a"}, "tag": "b"}, "condition.tag"),
    ]
    for condition, field in cases:
        r = client.post(
            "/segments", headers=tenant.admin, json={"key": "s", "condition": condition}
        )
        assert r.status_code == 422, (condition, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["field"] == field, (condition, r.json())
    assert client.get("/segments", headers=tenant.admin).json() == []


def test_references_cycles_and_guarded_deletes(client, tenant, conveyor):
    client.post(
        "/segments", headers=tenant.admin, json={"key": "vips", "condition": {"tag": "vip"}}
    )
    r = client.post(
        "/segments",
        headers=tenant.admin,
        json={
            "key": "vip-buyers",
            "condition": {"all": [{"segment": "vips"}, {"event": "order_completed"}]},
        },
    )
    assert r.status_code == 201
    r = client.patch(
        "/segments/vips", headers=tenant.admin, json={"condition": {"segment": "vip-buyers"}}
    )
    assert r.status_code == 422 and "vips → vip-buyers → vips" in r.json()["detail"]
    r = client.delete("/segments/vips", headers=tenant.admin)
    assert r.status_code == 409 and "vip-buyers" in r.json()["detail"]
    identify(client, tenant, "u1")
    client.post(
        f"/contacts/{contact_id(client, tenant, 'u1')}/tags",
        headers=tenant.admin,
        json={"tags": ["vip"]},
    )
    track(client, tenant, "u1", "order_completed", conveyor.clock.now())
    assert member_users(client, tenant, "vip-buyers") == ["u1"]
    assert client.delete("/segments/vip-buyers", headers=tenant.admin).status_code == 204
    assert client.delete("/segments/vips", headers=tenant.admin).status_code == 204


def test_explain_says_why(client, tenant, clock):
    now = clock.now()
    for days in (1, 2):
        track(client, tenant, "ann", "order_completed", now - timedelta(days=days), items=1)
    client.post(
        "/segments", headers=tenant.admin, json={"key": "good", "condition": GOOD_CUSTOMERS}
    )
    r = client.get(
        "/segments/good/explain",
        headers=tenant.admin,
        params={"contact": contact_id(client, tenant, "ann")},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["member"] is False
    assert "= 2 times, needs gte 3" in body["explanation"]["why"]
    assert (
        client.get(
            "/segments/good/explain", headers=tenant.admin, params={"contact": 99999}
        ).status_code
        == 404
    )


def test_count_members_pages_and_export(client, tenant):
    client.post("/fields", headers=tenant.admin, json={"key": "country", "type": "text"})
    for i in range(7):
        identify(
            client, tenant, f"u{i}", email=f"u{i}@example.com", country="DE" if i % 2 == 0 else "FR"
        )
    r = client.post(
        "/segments/count",
        headers=tenant.admin,
        json={"condition": {"field": "country", "op": "eq", "value": "DE"}},
    )
    assert r.json() == {"count": 4}
    client.post(
        "/segments",
        headers=tenant.admin,
        json={"key": "de", "condition": {"field": "country", "op": "eq", "value": "DE"}},
    )
    seen, cursor = [], None
    while True:
        page = client.get(
            "/segments/de/members",
            headers=tenant.admin,
            params={"limit": 3, **({"cursor": cursor} if cursor else {})},
        ).json()
        seen += [c["external_id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["u0", "u2", "u4", "u6"]
    r = client.get("/segments/de/export", headers=tenant.admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["email"] for row in rows] == [
        "u0@example.com",
        "u2@example.com",
        "u4@example.com",
        "u6@example.com",
    ]
    assert {row["country"] for row in rows} == {"DE"}
    assert client.get("/segments/nope/export", headers=tenant.admin).status_code == 404


def test_membership_follows_data_changes_without_touching_unrelated_segments(
    client, tenant, conveyor
):
    client.post(
        "/segments", headers=tenant.admin, json={"key": "vips", "condition": {"tag": "vip"}}
    )
    client.post(
        "/segments",
        headers=tenant.admin,
        json={
            "key": "gmail",
            "condition": {"field": "email_domain", "op": "eq", "value": "gmail.com"},
        },
    )
    assert client.get("/segments/vips", headers=tenant.admin).json()["time_based"] is False
    identify(client, tenant, "u1", email="u1@gmail.com")
    cid = contact_id(client, tenant, "u1")
    client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["vip"]})
    while conveyor.segments.process_log():
        pass
    names = [
        (e["name"], e["properties"].get("segment"))
        for e in client.get(
            f"/contacts/{cid}/events", headers=tenant.admin, params={"limit": 100}
        ).json()["items"]
        if e["name"].startswith("segment.")
    ]
    assert sorted(names) == [("segment.entered", "gmail"), ("segment.entered", "vips")]
    client.delete(f"/contacts/{cid}/tags/vip", headers=tenant.admin)
    client.patch(f"/contacts/{cid}", headers=tenant.admin, json={"email": "u1@proton.me"})
    while conveyor.segments.process_log():
        pass
    assert (
        member_users(client, tenant, "vips") == [] and member_users(client, tenant, "gmail") == []
    )
    exits = client.get(
        f"/contacts/{cid}/events", headers=tenant.admin, params={"name": "segment.exited"}
    ).json()["items"]
    assert sorted(e["properties"]["segment"] for e in exits) == ["gmail", "vips"]
    # Processing the log again changes nothing: the cursor moved with the effects.
    assert conveyor.segments.process_log() == 0
