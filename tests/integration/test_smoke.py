from __future__ import annotations


def test_identify_track_and_read_back(client, tenant):
    r = client.post("/v1/identify", headers=tenant.write, json={
        "userId": "u1", "anonymousId": "a1", "messageId": "m1",
        "traits": {"email": "Ada@Example.com", "firstName": "Ada", "plan": "pro", "age": 36},
        "context": {"timezone": "Europe/Warsaw", "locale": "pl-PL"},
    })
    assert r.status_code == 200, r.text
    r = client.post("/v1/track", headers=tenant.write, json={
        "userId": "u1", "event": "order_completed", "properties": {"total": 12.5}, "messageId": "m2"})
    assert r.status_code == 200, r.text
    r = client.get("/contacts/lookup", params={"external_id": "u1"}, headers=tenant.admin)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["email"] == "ada@example.com"
    assert c["first_name"] == "Ada"
    assert c["fields"] == {"plan": "pro", "age": 36}
    assert c["timezone"] == "Europe/Warsaw"
    assert c["anonymous_ids"] == ["a1"]
    r = client.get(f"/contacts/{c['id']}/events", headers=tenant.admin)
    names = [e["name"] for e in r.json()["items"]]
    assert names[0] == "order_completed"
    assert "contact.created" in names and "field.changed" in names
