"""Contacts over the admin API: create, change, find, list, delete — and the events it writes."""

from __future__ import annotations

import pytest


def events_of(client, tenant, contact_id, **params):
    r = client.get(
        f"/contacts/{contact_id}/events", headers=tenant.admin, params={"limit": 500, **params}
    )
    assert r.status_code == 200, r.text
    return list(reversed(r.json()["items"]))  # oldest first


def system_names(events):
    return [e["name"] for e in events if e["kind"] == "system"]


@pytest.fixture
def setup_catalog(client, tenant):
    for body in (
        {"key": "plan", "type": "choice", "choices": ["free", "pro"]},
        {"key": "birth_date", "type": "date"},
        {"key": "lifetime_value", "type": "number"},
        {"key": "vip", "type": "boolean"},
    ):
        assert client.post("/fields", json=body, headers=tenant.admin).status_code == 201
    r = client.post(
        "/lists", json={"key": "newsletter", "name": "Newsletter"}, headers=tenant.admin
    )
    assert r.status_code == 201
    r = client.post("/lists", json={"key": "vip-club", "double_opt_in": True}, headers=tenant.admin)
    assert r.status_code == 201


def test_create_validates_and_normalises_everything(client, tenant, setup_catalog):
    r = client.post(
        "/contacts",
        headers=tenant.admin,
        json={
            "email": " Ada@Example.COM",
            "phone": "+48 601 234 567",
            "first_name": "Ada",
            "timezone": "Europe/Warsaw",
            "locale": "pl_pl",
            "external_id": "u-1",
            "fields": {
                "plan": "pro",
                "birth_date": "1990-05-17",
                "lifetime_value": "120.5",
                "vip": "yes",
            },
            "tags": ["customer", "beta"],
            "lists": {"newsletter": "subscribed"},
            "score": 10,
        },
    )
    assert r.status_code == 201, r.text
    c = r.json()
    assert c["email"] == "ada@example.com"
    assert c["phone"] == "+48601234567"
    assert c["locale"] == "pl-PL"
    assert c["fields"] == {
        "plan": "pro",
        "birth_date": "1990-05-17",
        "lifetime_value": 120.5,
        "vip": True,
    }
    assert c["tags"] == ["beta", "customer"]
    assert c["lists"] == {"newsletter": "subscribed"}
    assert c["score"] == 10
    names = system_names(events_of(client, tenant, c["id"]))
    assert names[0] == "contact.created"
    assert names.count("field.changed") == 10  # 6 standard attributes + 4 custom fields
    assert names.count("tag.added") == 2
    assert "list.subscribed" in names and "score.changed" in names


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "nope"}, "email"),
        ({"email": "a@b.co", "phone": "12"}, "phone"),
        ({"email": "a@b.co", "timezone": "Mars/Base"}, "timezone"),
        ({"email": "a@b.co", "fields": {"plan": "gold"}}, "plan"),
        ({"email": "a@b.co", "fields": {"lifetime_value": "lots"}}, "lifetime_value"),
        ({"email": "a@b.co", "fields": {"lifetime_value": 10**30}}, "lifetime_value"),  # was a 500
        ({"email": "a@b.co", "fields": {"undeclared": 1}}, "undeclared"),
        ({"email": "a@b.co", "lists": {"nope": "subscribed"}}, "lists.nope"),
        ({"email": "a@b.co", "colour": "red"}, "colour"),
        ({"first_name": "Nobody"}, "email"),
    ],
)
def test_bad_input_is_a_problem_naming_the_field_and_stores_nothing(
    client, tenant, setup_catalog, body, field
):
    r = client.post("/contacts", headers=tenant.admin, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 422 and problem["field"] == field
    assert field in problem["detail"]
    assert client.get("/contacts", headers=tenant.admin).json()["items"] == []


def test_duplicate_email_or_external_id_is_a_conflict(client, tenant):
    client.post("/contacts", headers=tenant.admin, json={"email": "a@b.co", "external_id": "1"})
    r = client.post("/contacts", headers=tenant.admin, json={"email": "A@B.CO"})
    assert r.status_code == 409 and r.json()["field"] == "email"
    r = client.post("/contacts", headers=tenant.admin, json={"email": "c@d.co", "external_id": "1"})
    assert r.status_code == 409 and r.json()["field"] == "external_id"


def test_patch_changes_only_what_is_given_and_null_clears(client, tenant, setup_catalog):
    c = client.post(
        "/contacts",
        headers=tenant.admin,
        json={"email": "a@b.co", "first_name": "Ada", "last_name": "L", "fields": {"plan": "free"}},
    ).json()
    r = client.patch(
        f"/contacts/{c['id']}",
        headers=tenant.admin,
        json={"last_name": None, "fields": {"plan": "pro"}, "add_tags": ["x"], "score_delta": 5},
    )
    assert r.status_code == 200, r.text
    c2 = r.json()
    assert c2["first_name"] == "Ada" and c2["last_name"] is None
    assert c2["fields"] == {"plan": "pro"} and c2["tags"] == ["x"] and c2["score"] == 5
    changed = [e["properties"] for e in events_of(client, tenant, c["id"], name="field.changed")]
    assert {"field": "plan", "old": "free", "new": "pro"} in changed
    assert {"field": "last_name", "old": "L", "new": None} in changed
    # The same change again changes nothing and writes no event.
    before = len(events_of(client, tenant, c["id"]))
    client.patch(
        f"/contacts/{c['id']}",
        headers=tenant.admin,
        json={"fields": {"plan": "pro"}, "add_tags": ["x"]},
    )
    assert len(events_of(client, tenant, c["id"])) == before


def test_tags_lists_and_score_endpoints(client, tenant, setup_catalog):
    c = client.post("/contacts", headers=tenant.admin, json={"email": "a@b.co"}).json()
    cid = c["id"]
    assert client.post(
        f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["a", "b"]}
    ).json()["tags"] == ["a", "b"]
    assert client.delete(f"/contacts/{cid}/tags/a", headers=tenant.admin).json()["tags"] == ["b"]
    r = client.post(f"/contacts/{cid}/tags", headers=tenant.admin, json={"tags": ["bad,tag"]})
    assert r.status_code == 422 and r.json()["field"] == "add_tags.0"
    r = client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "subscribed"}
    )
    assert r.json()["lists"] == {"newsletter": "subscribed"}
    r = client.put(
        f"/contacts/{cid}/lists/newsletter", headers=tenant.admin, json={"status": "unsubscribed"}
    )
    assert r.json()["lists"] == {"newsletter": "unsubscribed"}
    assert (
        client.post(f"/contacts/{cid}/score", headers=tenant.admin, json={"delta": 7}).json()[
            "score"
        ]
        == 7
    )
    assert (
        client.post(f"/contacts/{cid}/score", headers=tenant.admin, json={"score": 2}).json()[
            "score"
        ]
        == 2
    )
    assert client.post(f"/contacts/{cid}/score", headers=tenant.admin, json={}).status_code == 422
    names = system_names(events_of(client, tenant, cid))
    assert names == [
        "contact.created",
        "field.changed",
        "tag.added",
        "tag.added",
        "tag.removed",
        "list.subscribed",
        "list.unsubscribed",
        "score.changed",
        "score.changed",
    ]
    scores = [e["properties"] for e in events_of(client, tenant, cid, name="score.changed")]
    assert scores == [
        {"score": "score", "old": 0, "new": 7},
        {"score": "score", "old": 7, "new": 2},
    ]


def test_double_opt_in_waits_for_the_signed_link(client, tenant, setup_catalog, conveyor):
    from conveyor.services.contacts import confirmation_token

    c = client.post(
        "/contacts",
        headers=tenant.admin,
        json={"email": "a@b.co", "lists": {"vip-club": "subscribed"}},
    ).json()
    assert c["lists"] == {"vip-club": "unconfirmed"}
    list_id = next(i.id for i, _ in conveyor.catalog.lists(tenant.workspace) if i.key == "vip-club")
    token = confirmation_token(tenant.workspace, c["id"], list_id)
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert client.get(f"/confirm/acme/{forged}").status_code == 404
    assert client.get(f"/confirm/acme/{c['id']}.1.2").status_code == 404
    r = client.get(f"/confirm/acme/{token}")
    assert r.status_code == 200 and "confirmed" in r.text
    assert client.get(f"/contacts/{c['id']}", headers=tenant.admin).json()["lists"] == {
        "vip-club": "subscribed"
    }
    names = system_names(events_of(client, tenant, c["id"]))
    assert names[-2:] == ["list.confirmation_requested", "list.subscribed"]
    assert client.get(f"/confirm/acme/{token}").status_code == 200  # a second click is harmless


def test_lookup_list_filters_and_cursor_pagination(client, tenant, setup_catalog):
    ids = []
    for i in range(7):
        body = {
            "email": f"p{i}@x.co",
            "external_id": f"u{i}",
            "tags": ["even"] if i % 2 == 0 else [],
        }
        if i < 3:
            body["lists"] = {"newsletter": "subscribed"}
        ids.append(client.post("/contacts", headers=tenant.admin, json=body).json()["id"])
    assert (
        client.get("/contacts/lookup", headers=tenant.admin, params={"email": "P3@X.CO"}).json()[
            "id"
        ]
        == ids[3]
    )
    assert (
        client.get("/contacts/lookup", headers=tenant.admin, params={"external_id": "u5"}).json()[
            "id"
        ]
        == ids[5]
    )
    assert (
        client.get(
            "/contacts/lookup", headers=tenant.admin, params={"external_id": "zz"}
        ).status_code
        == 404
    )
    assert client.get("/contacts/lookup", headers=tenant.admin).status_code == 422
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/contacts", headers=tenant.admin, params=params).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    evens = client.get("/contacts", headers=tenant.admin, params={"tag": "even"}).json()["items"]
    assert [c["id"] for c in evens] == ids[0::2]
    subs = client.get(
        "/contacts", headers=tenant.admin, params={"list": "newsletter", "status": "subscribed"}
    )
    assert [c["id"] for c in subs.json()["items"]] == ids[:3]
    assert (
        client.get("/contacts", headers=tenant.admin, params={"cursor": "garbage"}).status_code
        == 422
    )
    assert client.get("/contacts", headers=tenant.admin, params={"limit": 0}).status_code == 422


def test_delete_erases_the_contact_and_its_history(client, tenant):
    c = client.post(
        "/contacts", headers=tenant.admin, json={"email": "a@b.co", "tags": ["t"]}
    ).json()
    client.post("/v1/track", headers=tenant.write, json={"userId": "x", "event": "e"})
    assert client.delete(f"/contacts/{c['id']}", headers=tenant.admin).status_code == 204
    assert client.get(f"/contacts/{c['id']}", headers=tenant.admin).status_code == 404
    assert client.delete(f"/contacts/{c['id']}", headers=tenant.admin).status_code == 404
    log = client.get("/events", headers=tenant.admin, params={"limit": 500}).json()["items"]
    assert not [e for e in log if e["contact_id"] == c["id"] and e["name"] != "contact.deleted"]
    assert "a@b.co" not in str(log)
    # The email is free again.
    assert (
        client.post("/contacts", headers=tenant.admin, json={"email": "a@b.co"}).status_code == 201
    )


def test_fields_and_lists_catalog(client, tenant, setup_catalog):
    fields = {f["key"]: f for f in client.get("/fields", headers=tenant.admin).json()}
    assert fields["plan"]["choices"] == ["free", "pro"]
    assert (
        client.post(
            "/fields", headers=tenant.admin, json={"key": "plan", "type": "text"}
        ).status_code
        == 409
    )
    r = client.post("/fields", headers=tenant.admin, json={"key": "Bad Key", "type": "text"})
    assert r.status_code == 422 and r.json()["field"] == "key"
    r = client.post("/fields", headers=tenant.admin, json={"key": "x", "type": "float"})
    assert r.status_code == 422 and r.json()["field"] == "type"
    r = client.patch(
        "/fields/plan", headers=tenant.admin, json={"choices": ["free", "pro", "team"]}
    )
    assert r.json()["choices"] == ["free", "pro", "team"]
    assert client.delete("/fields/plan", headers=tenant.admin).status_code == 204
    assert client.get("/fields/plan", headers=tenant.admin).status_code == 404
    client.post(
        "/contacts",
        headers=tenant.admin,
        json={"email": "a@b.co", "lists": {"newsletter": "subscribed"}},
    )
    lists = {x["key"]: x for x in client.get("/lists", headers=tenant.admin).json()}
    assert lists["newsletter"]["counts"] == {"subscribed": 1}
    assert lists["vip-club"]["double_opt_in"] is True
    assert (
        client.patch("/lists/newsletter", headers=tenant.admin, json={"name": "Weekly"}).json()[
            "name"
        ]
        == "Weekly"
    )
    assert (
        client.post("/lists", headers=tenant.admin, json={"key": "newsletter"}).status_code == 409
    )
    assert client.delete("/lists/newsletter", headers=tenant.admin).status_code == 204
    c = client.get("/contacts/lookup", headers=tenant.admin, params={"email": "a@b.co"}).json()
    assert c["lists"] == {}
