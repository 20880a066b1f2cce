"""Scenarios 7 and 12 end to end through the public API with the simulated clock, on both
dialects, from the files under examples/: a big order tells sales (email to the SMTP sink) and
becomes a won deal owned by the account manager; a deal reaching "Qualified" is POSTed, signed,
to a CRM that is down for a while, exactly once. Plus the CRM nodes and triggers in a run."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from conveyor.domain.signatures import verify
from tests.support.flows import activate, settle
from tests.support.http import Peer
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(kind: str, name: str):
    return yaml.safe_load((EXAMPLES / kind / name).read_text())


def ok(response, status=200):
    assert response.status_code == status, response.text
    return response.json() if response.content else None


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def sales(client, tenant):
    ok(client.post("/pipelines", headers=tenant.admin, json=example("pipelines", "sales.yaml")))


def timeline(client, tenant, contact_id):
    items = ok(client.get(f"/contacts/{contact_id}/timeline", headers=tenant.admin))["items"]
    return [(s["node"], s["outcome"], s["reason"]) for s in reversed(items)]


def test_scenario_7_a_big_order_tells_sales_and_becomes_a_won_deal(
    client, tenant, conveyor, smtp
):
    ok(client.put("/channels/email", headers=tenant.admin,
                  json={"from": "Conveyor <robot@acme-shop.example>", "smtp_url": smtp.url}))
    sales(client, tenant)
    ok(client.post("/fields", headers=tenant.admin,
                   json={"key": "account_manager", "type": "text"}), 201)
    max_ = ok(client.post("/members", headers=tenant.admin,
                          json={"name": "Max", "email": "max@acme-shop.example"}), 201)
    ok(client.post("/members", headers=tenant.admin,
                   json={"name": "Olga", "email": "olga@acme-shop.example", "role": "owner"}), 201)
    activate(client, tenant, example("automations", "tell-sales.yaml"))
    ok(client.post("/v1/identify", headers=tenant.write, json={
        "userId": "bea", "traits": {"email": "bea@example.com", "firstName": "Bea",
                                    "account_manager": "max@acme-shop.example"}}))
    [bea] = ok(client.get("/contacts", headers=tenant.admin,
                          params={"email": "bea@example.com"}))["items"]
    ok(client.put(f"/contacts/{bea['id']}/owner", headers=tenant.admin,
                  json={"member": "olga@acme-shop.example"}))
    for total, order in ((1500.0, "A-1"), (15, "A-2")):  # only the big one tells sales
        ok(client.post("/v1/track", headers=tenant.write, json={
            "userId": "bea", "event": "order_completed",
            "properties": {"total": total, "order_id": order}}))
    settle(conveyor)

    [note] = smtp.messages
    assert sorted(note.recipients) == ["olga@acme-shop.example", "sales@acme-shop.example"]
    assert "email: bea@example.com" in note.part("plain")
    [deal] = ok(client.get("/deals", headers=tenant.admin, params={"contact": bea["id"]}))
    assert (deal["pipeline"], deal["stage"], deal["status"]) == ("sales", "Won", "won")
    assert (deal["value"], deal["currency"], deal["owner_id"]) == (1500, "EUR", max_["id"])
    assert deal["title"] == "Order A-1"
    events = ok(client.get(f"/contacts/{bea['id']}/events", headers=tenant.admin))["items"]
    assert [e["name"] for e in events if e["name"].startswith("deal.")] == [
        "deal.won", "deal.created"]
    steps = timeline(client, tenant, bea["id"])
    assert [(n, o) for n, o, _ in steps if n in ("notify", "deal")] == [
        ("notify", "queued"), ("deal", "done"), ("notify", "sent")]


def test_scenario_7_an_account_manager_who_is_not_a_member_fails_the_step_saying_why(
    client, tenant, conveyor, other_tenant
):
    sales(client, tenant)
    ok(client.post("/fields", headers=tenant.admin,
                   json={"key": "account_manager", "type": "text"}), 201)
    # A member of another workspace is nobody here.
    ok(client.post("/members", headers=other_tenant.admin,
                   json={"name": "Eve", "email": "eve@globex.example"}), 201)
    activate(client, tenant, example("automations", "tell-sales.yaml"))
    ok(client.post("/v1/identify", headers=tenant.write, json={
        "userId": "bea", "traits": {"email": "bea@example.com",
                                    "account_manager": "eve@globex.example"}}))
    ok(client.post("/v1/track", headers=tenant.write, json={
        "userId": "bea", "event": "order_completed", "properties": {"total": 5000}}))
    contact = ok(client.get("/contacts/lookup", headers=tenant.admin,
                            params={"external_id": "bea"}))
    settle(conveyor)
    assert ok(client.get("/deals", headers=tenant.admin)) == []
    failed = [(n, r) for n, o, r in timeline(client, tenant, contact["id"]) if o == "failed"]
    assert [n for n, _ in failed] == ["deal"]  # the owner-less contact's note still goes out
    assert failed[0][1]["field"] == "fields.account_manager"
    assert "no member 'eve@globex.example'" in failed[0][1]["why"]
    [note] = ok(client.get("/messages", headers=tenant.admin))["items"]
    assert note["channel"] == "team"


def test_scenario_12_a_deal_reaching_qualified_is_posted_signed_once_to_a_crm_that_was_down(
    client, tenant, conveyor, clock
):
    conveyor.settings.webhook_allow = "127.0.0.1/32"
    peer = Peer().start()
    try:
        for template in example("templates", "scenarios.yaml"):
            if template["key"] == "crm-lead":
                ok(client.post("/templates", headers=tenant.admin, json=template))
        sales(client, tenant)
        definition = example("automations", "crm-webhook.yaml")
        definition["nodes"][0]["url"] = f"{peer.url}/api/leads"
        activate(client, tenant, definition)
        peer.stop()  # the CRM is down
        contact = ok(client.post("/contacts", headers=tenant.admin, json={
            "email": "lead@example.com", "first_name": "Lee", "score": 55}), 201)
        deal = ok(client.post("/deals", headers=tenant.admin, json={
            "title": "Lee's", "pipeline": "sales", "contact_id": contact["id"]}), 201)
        settle(conveyor)
        ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin, json={"stage": "Qualified"}))
        settle(conveyor)
        ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin, json={"stage": "Proposal"}))
        settle(conveyor)
        for _ in range(6):
            clock.advance(timedelta(minutes=10))
            settle(conveyor)
        [message] = ok(client.get("/messages", headers=tenant.admin))["items"]
        assert message["status"] == "pending" and message["attempts"] >= 3
        peer.start()  # back
        clock.advance(timedelta(hours=2))
        settle(conveyor)
        clock.advance(timedelta(hours=6))
        settle(conveyor)
        [(path, headers, body)] = peer.requests  # exactly once
        assert path == "/api/leads"
        assert json.loads(body) == {"email": "lead@example.com", "name": "Lee", "score": 55,
                                    "stage": "Qualified"}
        secret = ok(client.get("/channels", headers=tenant.admin))["webhook"]["signing_secret"]
        now = int(clock.now().timestamp())
        assert verify(secret.encode(), headers["Conveyor-Signature"], body, now, tolerance=10**6)
        [sent] = ok(client.get("/messages", headers=tenant.admin))["items"]
        assert sent["status"] == "sent"
        outcomes = [o for _, o, _ in timeline(client, tenant, contact["id"])]
        assert outcomes[0] == "queued" and outcomes[-1] == "sent" and "retrying" in outcomes
    finally:
        peer.stop()


def test_crm_nodes_move_a_deal_assign_round_robin_and_make_a_task(client, tenant, conveyor):
    sales(client, tenant)
    ids = [ok(client.post("/members", headers=tenant.admin,
                          json={"name": n, "email": f"{n}@acme.example"}), 201)["id"]
           for n in ("ann", "bob")]
    activate(client, tenant, {
        "key": "qualify", "triggers": [{"event": "demo_booked"}],
        "entry": {"repeat": "every_time"},
        "nodes": [
            {"id": "deal", "type": "create_deal", "pipeline": "sales",
             "value": "{{ event.total }}", "owner": {"round_robin": "sales"}},
            {"id": "move", "type": "update_deal", "stages": ["Qualified", "Proposal"],
             "value": 900},
            {"id": "owner", "type": "assign_owner", "owner": "deal_owner"},
            {"id": "task", "type": "create_task", "title": "Call {{ event.who }}",
             "task": "call", "due_in": "1 day", "assignee": "contact_owner"},
            {"id": "note", "type": "add_note", "body": "Booked a demo"},
        ]})
    people = []
    for who in ("p1", "p2", "p3"):
        ok(client.post("/v1/identify", headers=tenant.write,
                       json={"userId": who, "traits": {"email": f"{who}@example.com"}}))
        ok(client.post("/v1/track", headers=tenant.write, json={
            "userId": who, "event": "demo_booked", "properties": {"total": 500, "who": who}}))
        people.append(ok(client.get("/contacts/lookup", headers=tenant.admin,
                                    params={"external_id": who})))
    settle(conveyor)
    deals = ok(client.get("/deals", headers=tenant.admin))
    assert [(d["stage"], d["value"]) for d in deals] == [("Proposal", 900)] * 3
    assert [d["owner_id"] for d in deals] == [ids[0], ids[1], ids[0]]  # in turn
    for person, deal in zip(people, deals, strict=True):
        owner = ok(client.get(f"/contacts/{person['id']}/owner", headers=tenant.admin))
        assert owner["id"] == deal["owner_id"]
        [task] = ok(client.get("/tasks", headers=tenant.admin, params={"contact": person["id"]}))
        assert (task["type"], task["assignee_id"], task["deal_id"]) == (
            "call", deal["owner_id"], deal["id"])
        events = ok(client.get(f"/contacts/{person['id']}/events", headers=tenant.admin))["items"]
        moves = [(e["properties"]["from"], e["properties"]["to"])
                 for e in reversed(events) if e["name"] == "deal.stage_changed"]
        assert moves == [("Lead", "Qualified"), ("Qualified", "Proposal")]


def test_bad_crm_nodes_are_refused_when_applied_naming_the_field(client, tenant):
    sales(client, tenant)

    def refused(node):
        r = client.post("/automations", headers=tenant.admin, json={
            "key": "bad", "triggers": [{"event": "x"}], "nodes": [{"id": "m", **node}]})
        assert r.status_code == 422, r.text
        return r.json()["field"]

    assert refused({"type": "update_deal", "stages": ["Lead", "Qualified", "Lead"]}) == (
        "nodes.0.stages.2")
    assert refused({"type": "create_deal", "pipeline": "sales", "stage": "Nope"}) == (
        "nodes.0.stage")
    assert refused({"type": "create_deal", "pipeline": "nope"}) == "nodes.0.pipeline"
    assert refused({"type": "update_deal", "pipeline": "sales", "stages": ["Won", "Nope"]}) == (
        "nodes.0.stages.1")
    assert refused({"type": "create_deal", "pipeline": "sales", "value": -1}) == "nodes.0.value"


def test_deal_conditions_in_segments_and_in_a_run_see_deals_as_they_change(
    client, tenant, conveyor
):
    sales(client, tenant)
    ok(client.post("/segments", headers=tenant.admin, json={
        "key": "big-open", "condition": {"deal": {"status": "open",
                                                  "value": {"op": "gte", "value": 1000}}}}), 201)
    activate(client, tenant, {
        "key": "sized", "triggers": [{"event": "go"}], "entry": {"repeat": "every_time"},
        "nodes": [
            {"id": "deal", "type": "create_deal", "pipeline": "sales",
             "value": "{{ event.total }}"},
            {"id": "check", "type": "if",
             "condition": {"deal": {"pipeline": "sales", "value": {"op": "gte", "value": 1000}}},
             "then": "big", "else": "small"},
            {"id": "big", "type": "add_tag", "tag": "big", "next": "end"},
            {"id": "small", "type": "add_tag", "tag": "small"},
        ]})
    for who, total in (("a", 2000), ("b", 10)):
        ok(client.post("/v1/identify", headers=tenant.write,
                       json={"userId": who, "traits": {"email": f"{who}@example.com"}}))
        ok(client.post("/v1/track", headers=tenant.write,
                       json={"userId": who, "event": "go", "properties": {"total": total}}))
    settle(conveyor)
    a, b = (ok(client.get("/contacts/lookup", headers=tenant.admin, params={"external_id": w}))
            for w in ("a", "b"))
    assert (a["tags"], b["tags"]) == (["big"], ["small"])  # the run saw the deal it made

    def members():
        page = ok(client.get("/segments/big-open/members", headers=tenant.admin))
        return {c["id"] for c in page["items"]}

    assert members() == {a["id"]}
    [deal] = ok(client.get("/deals", headers=tenant.admin, params={"contact": a["id"]}))
    ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin,
                    json={"status": "lost", "lost_reason": "budget"}))
    settle(conveyor)
    assert members() == set()
    [other] = ok(client.get("/deals", headers=tenant.admin, params={"contact": b["id"]}))
    ok(client.patch(f"/deals/{other['id']}", headers=tenant.admin, json={"value": 1000}))
    settle(conveyor)
    assert members() == {b["id"]}  # a value change alone (deal.updated) moves membership


def test_a_won_deal_notifies_its_owner_and_an_overdue_call_its_contacts_owner(
    client, tenant, conveyor, clock, smtp
):
    ok(client.put("/channels/email", headers=tenant.admin,
                  json={"from": "robot@acme-shop.example", "smtp_url": smtp.url}))
    sales(client, tenant)
    ann, bob = (ok(client.post("/members", headers=tenant.admin,
                               json={"name": n, "email": f"{n}@acme.example"}), 201)
                for n in ("ann", "bob"))
    activate(client, tenant, {
        "key": "won", "triggers": [{"deal_won": "sales"}], "entry": {"repeat": "every_time"},
        "nodes": [{"id": "tell", "type": "notify_team", "to": ["deal_owner"]}]})
    activate(client, tenant, {
        "key": "late", "triggers": [{"task_overdue": {"type": "call"}}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "tell", "type": "notify_team", "to": ["contact_owner"]}]})
    lee = ok(client.post("/contacts", headers=tenant.admin, json={"email": "lee@example.com"}), 201)
    ok(client.put(f"/contacts/{lee['id']}/owner", headers=tenant.admin, json={"member": bob["id"]}))
    deal = ok(client.post("/deals", headers=tenant.admin, json={
        "title": "T", "pipeline": "sales", "contact_id": lee["id"], "owner_id": ann["id"]}), 201)
    ok(client.patch(f"/deals/{deal['id']}", headers=tenant.admin, json={"status": "won"}))
    ok(client.post("/tasks", headers=tenant.admin, json={
        "type": "call", "title": "Call Lee", "contact_id": lee["id"],
        "due_at": (clock.now() + timedelta(hours=1)).isoformat()}), 201)
    settle(conveyor)
    assert [m.recipients for m in smtp.messages] == [["ann@acme.example"]]
    clock.advance(timedelta(hours=2))
    settle(conveyor)
    settle(conveyor)  # a second sweep finds the task recorded already
    assert [m.recipients for m in smtp.messages] == [["ann@acme.example"], ["bob@acme.example"]]
