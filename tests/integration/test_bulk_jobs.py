"""Bulk actions on an audience through the API, on both databases: the preview count, the
explicit confirmation, progress, each action's effect (and its events), and enrolling a
segment's members into an automation under its entry rules."""

from __future__ import annotations

from tests.support.flows import activate, settle


def seed(client, tenant, n=12):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    client.post("/segments", headers=tenant.admin,
                json={"key": "fans", "condition": {"tag": "fan"}})
    ids = []
    for i in range(n):
        body = {"email": f"c{i}@example.com", "lists": {"newsletter": "subscribed"}}
        if i % 3 == 0:
            body["tags"] = ["fan"]
        ids.append(client.post("/contacts", headers=tenant.admin, json=body).json()["id"])
    return ids


def run_job(conveyor, client, tenant, body):
    r = client.post("/bulk-jobs/preview", headers=tenant.admin, json=body)
    assert r.status_code == 200, r.text
    count = r.json()["count"]
    r = client.post("/bulk-jobs", headers=tenant.admin, json=body)
    assert r.status_code == 422 and r.json()["field"] == "confirm", r.text
    assert f"{count} contacts" in r.json()["detail"]
    r = client.post("/bulk-jobs", headers=tenant.admin, json={**body, "confirm": True})
    assert r.status_code == 201, r.text
    job = r.json()
    assert (job["status"], job["total"], job["done"]) == ("queued", count, 0)
    conveyor.bulk_jobs.run_until_idle()
    settle(conveyor)
    done = client.get(f"/bulk-jobs/{job['id']}", headers=tenant.admin).json()
    assert (done["status"], done["done"]) == ("done", count), done
    return done


def test_tag_untag_and_unsubscribe_a_list_minus_a_segment(client, tenant, conveyor):
    ids = seed(client, tenant)
    conveyor.bulk_jobs.chunk = 5  # several chunks, each with its cursor
    settle(conveyor)
    audience = {"lists": ["newsletter"], "exclude": {"segments": ["fans"]}}
    job = run_job(conveyor, client, tenant,
                  {"action": "tag", "audience": audience, "params": {"tag": "spring"}})
    assert job["total"] == 8 and job["outcomes"] == {"changed": 8}
    tagged = {c["id"] for c in client.get("/contacts", headers=tenant.admin,
                                          params={"limit": 100}).json()["items"]
              if "spring" in c["tags"]}
    assert tagged == {cid for i, cid in enumerate(ids) if i % 3}
    job = run_job(conveyor, client, tenant,
                  {"action": "untag", "audience": {"tags": ["spring"]}, "params": {"tag": "spring"}})
    assert job["outcomes"] == {"changed": 8}
    job = run_job(conveyor, client, tenant, {"action": "unsubscribe",
                                             "audience": {"segments": ["fans"]},
                                             "params": {"list": "newsletter"}})
    assert job["outcomes"] == {"changed": 4}
    contact = client.get(f"/contacts/{ids[0]}", headers=tenant.admin).json()
    assert contact["lists"] == {"newsletter": "unsubscribed"}
    events = client.get("/events", headers=tenant.admin, params={"limit": 500}).json()["items"]
    assert sum(e["name"] == "tag.added" and e["properties"].get("tag") == "spring"
               for e in events) == 8
    # Deleting: the contacts go, with their contact.deleted events.
    job = run_job(conveyor, client, tenant,
                  {"action": "delete", "audience": {"segments": ["fans"]}})
    assert job["outcomes"] == {"deleted": 4}
    assert client.get(f"/contacts/{ids[0]}", headers=tenant.admin).status_code == 404


def test_enroll_a_segment_into_an_automation_once(client, tenant, conveyor):
    seed(client, tenant)
    activate(client, tenant, {"key": "winback", "triggers": [{"event": "never"}],
                              "entry": {"repeat": "once"},
                              "nodes": [{"id": "mark", "type": "add_tag", "tag": "won"}]})
    settle(conveyor)
    body = {"action": "enroll", "audience": {"segments": ["fans"]},
            "params": {"automation": "winback"}}
    job = run_job(conveyor, client, tenant, body)
    assert job["outcomes"] == {"entered": 4}
    again = run_job(conveyor, client, tenant, body)  # entry rules still apply: once
    assert again["outcomes"] == {"skipped: entered before (once per contact)": 4}, again
    won = [c for c in client.get("/contacts", headers=tenant.admin,
                                 params={"limit": 100}).json()["items"] if "won" in c["tags"]]
    assert len(won) == 4 and all("fan" in c["tags"] for c in won)


def test_bad_jobs_are_refused_naming_the_field(client, tenant, conveyor):
    seed(client, tenant, 3)
    cases = [
        ({"action": "explode", "audience": {"lists": ["newsletter"]}}, "action"),
        ({"action": "tag", "audience": {"lists": ["newsletter"]}}, "params.tag"),
        ({"action": "tag", "audience": {"lists": ["nope"]}, "params": {"tag": "x"}},
         "audience.lists"),
        ({"action": "subscribe", "audience": {"tags": ["x"]}, "params": {"list": "nope"}},
         "params.list"),
        ({"action": "enroll", "audience": {"tags": ["x"]}, "params": {"automation": "nope"}},
         "params.automation"),
        ({"action": "tag", "audience": {}, "params": {"tag": "x"}}, "audience"),
    ]
    for body, field in cases:
        r = client.post("/bulk-jobs", headers=tenant.admin, json={**body, "confirm": True})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["field"] == field, (field, r.json())
    assert client.get("/bulk-jobs/999", headers=tenant.admin).status_code == 404
    r = client.post("/bulk-jobs", headers=tenant.admin, json={
        "action": "tag", "audience": {"lists": ["newsletter"]}, "params": {"tag": "x"},
        "confirm": True})
    job = r.json()
    r = client.post(f"/bulk-jobs/{job['id']}/cancel", headers=tenant.admin)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    conveyor.bulk_jobs.run_until_idle()
    assert client.get(f"/bulk-jobs/{job['id']}", headers=tenant.admin).json()["done"] == 0
    assert client.post(f"/bulk-jobs/{job['id']}/cancel", headers=tenant.admin).status_code == 409


def test_a_condition_filters_the_audience(client, tenant, conveyor):
    seed(client, tenant)
    settle(conveyor)
    narrowed = {"action": "tag", "params": {"tag": "picked"},
                "audience": {"lists": ["newsletter"], "condition": {"tag": "fan"}}}
    job = run_job(conveyor, client, tenant, narrowed)
    assert job["total"] == 4 and job["outcomes"] == {"changed": 4}
    alone = {"action": "untag", "params": {"tag": "picked"},
             "audience": {"condition": {"tag": "picked"}}}
    assert run_job(conveyor, client, tenant, alone)["outcomes"] == {"changed": 4}
    r = client.post("/campaigns/count", headers=tenant.admin,
                    json={"audience": {"lists": ["newsletter"], "condition": {"not": {"tag": "fan"}}}})
    assert r.status_code == 200 and r.json() == {"count": 8}, r.text
    r = client.post("/bulk-jobs/preview", headers=tenant.admin, json={
        "action": "tag", "params": {"tag": "x"}, "audience": {"condition": {"segment": "nope"}}})
    assert r.status_code == 422 and r.json()["field"].startswith("audience.condition"), r.text
