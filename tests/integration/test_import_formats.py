"""Files as users bring them (issue 19): `;` and tab separated, other tools' export headers, quoted
tags, status columns, a dry run, and Conveyor's own export read back without a change."""

from __future__ import annotations

import json

from tests.integration.test_import import post_csv

MAILCHIMP = (
    'Email Address;First Name;Last Name;Phone Number;TAGS;OPTIN_TIME\n'
    'ada@example.com;Ada;Lovelace;+44 20 7946 0958;"""VIP"",""Customer""";2026-01-02 10:00:00\n'
    'grace@example.com;Grace;Hopper;;"""Customer""";2026-01-03 11:00:00\n'
)
HUBSPOT = (
    "First Name\tLast Name\tEmail\tPhone Number\tEmail Marketing Status\n"
    "Linus\tTorvalds\tlinus@example.com\t\tSubscribed\n"
    "Margaret\tHamilton\tmargaret@example.com\t\tUnsubscribed\n"
    "Alan\tTuring\talan@example.com\t\tNon-subscribed\n"
)
ACTIVECAMPAIGN = (
    "Email,First Name,Last Name,Phone,Tags,Status\n"
    "edsger@example.com,Edsger,Dijkstra,,\"algorithms, vip\",Active\n"
    "barbara@example.com,Barbara,Liskov,,,Bounced\n"
)


def contact(client, tenant, email):
    r = client.get("/contacts/lookup", params={"email": email}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()


def test_a_mailchimp_export_with_semicolons_and_quoted_tags(client, tenant):
    r = post_csv(client, tenant, MAILCHIMP)
    assert r.status_code == 200, r.text
    report = r.json()
    assert (report["created"], report["failed"]) == (2, 0), report
    assert report["ignored_columns"] == ["OPTIN_TIME"]
    ada = contact(client, tenant, "ada@example.com")
    assert (ada["first_name"], ada["last_name"]) == ("Ada", "Lovelace")
    assert ada["phone"] == "+442079460958"
    assert sorted(ada["tags"]) == ["Customer", "VIP"]  # no quote marks left
    assert contact(client, tenant, "grace@example.com")["tags"] == ["Customer"]


def test_a_hubspot_export_with_tabs_and_statuses(client, tenant):
    r = post_csv(client, tenant, HUBSPOT, list="newsletter")
    assert r.status_code == 200, r.text
    assert (r.json()["created"], r.json()["failed"]) == (3, 0), r.json()
    assert contact(client, tenant, "linus@example.com")["lists"] == {"newsletter": "subscribed"}
    assert contact(client, tenant, "margaret@example.com")["lists"] == {
        "newsletter": "unsubscribed"}
    assert contact(client, tenant, "alan@example.com")["lists"] == {}  # non-subscribed: none


def test_an_activecampaign_export_and_a_status_needs_a_list(client, tenant):
    r = post_csv(client, tenant, ACTIVECAMPAIGN)
    assert r.status_code == 422 and r.json()["field"] == "list"
    r = post_csv(client, tenant, ACTIVECAMPAIGN, list="newsletter")
    assert r.status_code == 200 and r.json()["failed"] == 0, r.text
    edsger = contact(client, tenant, "edsger@example.com")
    assert sorted(edsger["tags"]) == ["algorithms", "vip"]
    assert edsger["lists"] == {"newsletter": "subscribed"}
    assert contact(client, tenant, "barbara@example.com")["lists"] == {"newsletter": "bounced"}
    bad = post_csv(client, tenant, "Email,Status\nx@example.com,maybe\n", list="newsletter")
    assert bad.json()["errors"] == [{"line": 2, "field": "status",
                                     "detail": bad.json()["errors"][0]["detail"]}]
    assert "not a status" in bad.json()["errors"][0]["detail"]


def test_a_dry_run_reports_and_writes_nothing(client, tenant):
    r = post_csv(client, tenant, MAILCHIMP, dry_run="true")
    assert r.status_code == 200 and r.json()["created"] == 2, r.text
    missing = client.get("/contacts/lookup", params={"email": "ada@example.com"},
                         headers=tenant.admin)
    assert missing.status_code == 404
    assert client.get("/contacts", headers=tenant.admin).json()["items"] == []


def test_the_export_imports_back_without_a_change(client, tenant):
    for body in [{"key": "plan", "type": "choice", "choices": ["free", "pro"]},
                 {"key": "seats", "type": "number"}, {"key": "beta", "type": "boolean"},
                 {"key": "renews", "type": "date"}]:
        assert client.post("/fields", headers=tenant.admin, json=body).status_code == 201
    for key in ("newsletter", "offers"):
        assert client.post("/lists", headers=tenant.admin, json={"key": key}).status_code == 201
    people = [
        {"email": "ada@example.com", "first_name": "Ada", "external_id": "u-1", "tags": ["vip"],
         "score": 12, "fields": {"plan": "pro", "seats": 3, "beta": True, "renews": "2027-01-31"},
         "lists": {"newsletter": "subscribed", "offers": "unsubscribed"}},
        {"phone": "+48600100200", "external_id": "u-2", "last_name": "Nowak, Jr.",
         "fields": {"beta": False}, "lists": {"offers": "subscribed"}},
        {"email": "plain@example.com"},
    ]
    for person in people:
        assert client.post("/contacts", headers=tenant.admin, json=person).status_code == 201

    exported = client.get("/contacts/export", headers=tenant.admin)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    header = exported.text.splitlines()[0].split(",")
    assert {"list:newsletter", "list:offers", "created_at", "score", "beta"} <= set(header)
    again = post_csv(client, tenant, exported.text)
    assert again.status_code == 200, again.text
    report = again.json()
    assert (report["created"], report["updated"], report["unchanged"], report["failed"]) == (
        0, 0, 3, 0), report
    assert report["ignored_columns"] == []

    lines = client.get("/contacts/export", params={"format": "ndjson"},
                       headers=tenant.admin).text.splitlines()
    documents = {d["external_id"]: d for d in map(json.loads, lines) if d["external_id"]}
    assert documents["u-1"]["lists"] == {"newsletter": "subscribed", "offers": "unsubscribed"}
    assert documents["u-1"]["fields"]["seats"] == 3 and documents["u-2"]["fields"]["beta"] is False
    assert client.get("/contacts/export", params={"format": "xml"},
                      headers=tenant.admin).status_code == 422
