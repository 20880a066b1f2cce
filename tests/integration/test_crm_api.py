"""The sales side over the API on both dialects: members, pipelines, deals with their events,
board and forecast, tasks and the overdue sweep, and bad input answered 4xx naming the field."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import yaml

from tests.support.flows import settle

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


def problem(response, status, field):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["field"] == field, body
    return body


def setup_sales(client, tenant):
    pipeline = yaml.safe_load((EXAMPLES / "pipelines" / "sales.yaml").read_text())
    ok(client.post("/pipelines", headers=tenant.admin, json=pipeline))
    ada = ok(client.post("/members", headers=tenant.admin,
                         json={"name": "Ada", "email": "Ada@Acme.example", "role": "sales"}), 201)
    contact = ok(client.post("/contacts", headers=tenant.admin,
                             json={"email": "lee@example.com", "first_name": "Lee"}), 201)
    return ada, contact


def events(client, tenant, contact_id, prefix):
    items = ok(client.get(f"/contacts/{contact_id}/events", headers=tenant.admin,
                          params={"limit": 100}))["items"]
    return [(e["name"], e["properties"]) for e in reversed(items) if e["name"].startswith(prefix)]


def test_a_deal_moves_through_the_pipeline_and_each_change_is_an_event(client, tenant):
    ada, contact = setup_sales(client, tenant)
    assert ada["email"] == "ada@acme.example"
    ok(client.post("/deal-fields", headers=tenant.admin,
                   json={"key": "source", "type": "choice", "choices": ["web", "fair"]}), 201)
    deal = ok(client.post("/deals", headers=tenant.admin, json={
        "title": "Big order", "pipeline": "sales", "value": 1200.5, "currency": "eur",
        "contact_id": contact["id"], "owner_id": ada["id"], "expected_close": "2027-01-15",
        "fields": {"source": "web"}}), 201)
    assert (deal["stage"], deal["status"], deal["value"], deal["currency"]) == (
        "Lead", "open", 1200.5, "EUR")
    deal = ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin,
                           json={"stage": "Proposal"}))
    assert deal["stage"] == "Proposal"
    ok(client.post(f"/deals/{deal['id']}/notes", headers=tenant.admin,
                   json={"body": "Asked for a discount", "author_id": ada["id"]}), 201)
    assert [n["body"] for n in ok(client.get(f"/deals/{deal['id']}", headers=tenant.admin))[
        "notes"]] == ["Asked for a discount"]

    board = ok(client.get("/pipelines/sales/board", headers=tenant.admin))
    assert [(s["stage"], s["count"]) for s in board["stages"]] == [
        ("Lead", 0), ("Qualified", 0), ("Proposal", 1), ("Negotiation", 0), ("Won", 0)]
    assert board["stages"][2]["value"] == {"EUR": 1200.5}
    forecast = ok(client.get("/forecast", headers=tenant.admin))
    assert forecast["owner"] == [{"owner": "ada@acme.example", "currency": "EUR", "deals": 1,
                                  "open_value": 1200.5, "weighted_value": 720.3}]
    assert forecast["month"][0]["month"] == "2027-01"
    assert forecast["stage"][0] == {"pipeline": "sales", "stage": "Proposal", "currency": "EUR",
                                    "deals": 1, "open_value": 1200.5, "weighted_value": 720.3}

    ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin,
                    json={"status": "lost", "lost_reason": "price"}))
    assert ok(client.get("/forecast", headers=tenant.admin))["pipeline"] == []
    assert [n for n, _ in events(client, tenant, contact["id"], "deal.")] == [
        "deal.created", "deal.stage_changed", "deal.lost"]
    [(_, moved)] = [e for e in events(client, tenant, contact["id"], "deal.")
                    if e[0] == "deal.stage_changed"]
    assert (moved["from"], moved["to"], moved["pipeline"]) == ("Lead", "Proposal", "sales")


def test_bad_crm_input_is_a_4xx_naming_the_field(client, tenant, other_tenant):
    ada, contact = setup_sales(client, tenant)
    theirs = ok(client.post("/members", headers=other_tenant.admin,
                            json={"name": "Eve", "email": "eve@globex.example"}), 201)
    base = {"title": "T", "pipeline": "sales", "contact_id": contact["id"]}
    problem(client.post("/deals", headers=tenant.admin, json={**base, "stage": "Nope"}),
            422, "stage")
    problem(client.post("/deals", headers=tenant.admin, json={**base, "value": -1}), 422, "value")
    problem(client.post("/deals", headers=tenant.admin, json={**base, "owner_id": theirs["id"]}),
            422, "owner_id")
    problem(client.post("/deals", headers=tenant.admin, json={**base, "pipeline": "nope"}),
            422, "pipeline")
    problem(client.post("/deals", headers=tenant.admin, json={**base, "currency": "E1"}),
            422, "currency")
    problem(client.post("/deals", headers=tenant.admin, json={**base, "fields": {"x": 1}}),
            422, "fields.x")
    problem(client.post("/pipelines", headers=tenant.admin, json={
        "key": "dup", "stages": [{"name": "A"}, {"name": "A"}]}), 422, "stages.1.name")
    deal = ok(client.post("/deals", headers=tenant.admin, json=base), 201)
    problem(client.patch(f"/deals/{deal['id']}", headers=tenant.admin,
                         json={"status": "won", "lost_reason": "x"}), 422, "lost_reason")
    problem(client.put("/pipelines/sales", headers=tenant.admin,
                       json={"stages": [{"name": "Won"}]}), 409, "stages")
    problem(client.put(f"/contacts/{contact['id']}/owner", headers=tenant.admin,
                       json={"member": theirs["id"]}), 422, "member_id")
    problem(client.post("/tasks", headers=tenant.admin,
                        json={"title": "x", "assignee_id": theirs["id"]}), 422, "assignee_id")
    problem(client.post("/members", headers=tenant.admin,
                        json={"name": "A", "email": "ada@acme.example"}), 409, "email")
    # A moment that exists in its own offset but not in UTC (year 1, an hour east).
    problem(client.post("/tasks", headers=tenant.admin,
                        json={"title": "x", "due_at": "0001-01-01T00:30:00+01:00"}), 422, "due_at")
    problem(client.patch(f"/deals/{deal['id']}", headers=tenant.admin, json={"value": None}),
            422, "value")
    assert ok(client.get("/deals", headers=tenant.admin)) == [
        ok(client.get(f"/deals/{deal['id']}", headers=tenant.admin)) | {"notes": None}]


def test_contact_owner_and_an_overdue_task_recorded_once(client, tenant, conveyor, clock):
    ada, contact = setup_sales(client, tenant)
    owner = ok(client.put(f"/contacts/{contact['id']}/owner", headers=tenant.admin,
                          json={"member": "ada@acme.example"}))
    assert owner["id"] == ada["id"]
    assert ok(client.get(f"/contacts/{contact['id']}/owner", headers=tenant.admin))["id"] == ada[
        "id"]
    due = (clock.now() + timedelta(hours=1)).isoformat()
    task = ok(client.post("/tasks", headers=tenant.admin, json={
        "type": "call", "title": "Call Lee", "due_at": due, "assignee_id": ada["id"],
        "contact_id": contact["id"]}), 201)
    settle(conveyor)
    assert not ok(client.get(f"/tasks/{task['id']}", headers=tenant.admin))["overdue"]
    clock.advance(timedelta(hours=2))
    settle(conveyor)
    settle(conveyor)
    assert ok(client.get(f"/tasks/{task['id']}", headers=tenant.admin))["overdue"]
    done = ok(client.patch(f"/tasks/{task['id']}", headers=tenant.admin, json={"done": True}))
    assert done["done"]
    assert [n for n, _ in events(client, tenant, contact["id"], "task.")] == [
        "task.created", "task.overdue", "task.completed"]
    assert [n for n, _ in events(client, tenant, contact["id"], "contact.owner")] == [
        "contact.owner_changed"]


def test_a_member_who_leaves_leaves_their_deals_and_contacts_unowned(client, tenant):
    ada, contact = setup_sales(client, tenant)
    ok(client.put(f"/contacts/{contact['id']}/owner", headers=tenant.admin,
                  json={"member": ada["id"]}))
    deal = ok(client.post("/deals", headers=tenant.admin, json={
        "title": "T", "pipeline": "sales", "contact_id": contact["id"], "owner_id": ada["id"]}), 201)
    task = ok(client.post("/tasks", headers=tenant.admin,
                          json={"title": "Call", "deal_id": deal["id"], "assignee_id": ada["id"]}),
              201)
    assert task["contact_id"] == contact["id"]  # a deal's task is about the deal's contact
    assert client.delete(f"/members/{ada['id']}", headers=tenant.admin).status_code == 204
    assert ok(client.get(f"/deals/{deal['id']}", headers=tenant.admin))["owner_id"] is None
    assert ok(client.get(f"/tasks/{task['id']}", headers=tenant.admin))["assignee_id"] is None
    assert ok(client.get(f"/contacts/{contact['id']}/owner", headers=tenant.admin)) is None
    assert client.get(f"/members/{ada['id']}", headers=tenant.admin).status_code == 404
