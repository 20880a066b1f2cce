"""Scenario 8's scoring half end to end on both databases: the model and automation under
examples/, the API over HTTP, real delivery to an SMTP sink, tracked clicks followed over HTTP,
and the simulated clock for decay."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from tests.integration.test_channel_scenarios import apply, events, links_in, local
from tests.support.flows import activate, settle
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MODEL = yaml.safe_load((EXAMPLES / "scoring" / "lead-scoring.yaml").read_text())


@pytest.fixture
def mail(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Acme Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    client.post("/fields", headers=tenant.admin, json={"key": "promo_code", "type": "text"})
    for template in yaml.safe_load((EXAMPLES / "templates" / "welcome.yaml").read_text()):
        assert client.post("/templates", headers=tenant.admin, json=template).status_code == 200
    yield sink
    sink.stop()


@pytest.fixture
def model(client, tenant):
    for key, kind in (("country", "text"), ("job_title", "text"), ("company_size", "number")):
        r = client.post("/fields", headers=tenant.admin, json={"key": key, "type": kind})
        assert r.status_code in (200, 201), r.text
    r = client.put("/scoring-model", headers=tenant.admin, json=MODEL)
    assert r.status_code == 200, r.text
    return r.json()


def scores(client, tenant, cid):
    r = client.get(f"/contacts/{cid}/scores", headers=tenant.admin)
    assert r.status_code == 200, r.text
    return {s["score"]: s for s in r.json()["scores"]}


def visit(client, tenant, user, url):
    r = client.post("/v1/page", headers=tenant.write,
                    json={"userId": user, "properties": {"url": url}})
    assert r.status_code == 200, r.text


def crossings(client, tenant, cid, score, threshold):
    out = []
    for e in events(client, tenant, cid, "score.changed"):
        p = e["properties"]
        if p["score"] == score and (p["old"] < threshold <= p["new"]
                                    or p["new"] < threshold <= p["old"]):
            out.append("up" if p["new"] > p["old"] else "down")
    return list(reversed(out))  # oldest first


def test_scenario_8_lead_scoring_clicks_visits_decay_and_one_notification(
    client, server, tenant, conveyor, clock, mail, model
):
    client.post("/lists", headers=tenant.admin, json={"key": "newsletter"})
    pipeline = yaml.safe_load((EXAMPLES / "pipelines" / "sales.yaml").read_text())
    assert client.post("/pipelines", headers=tenant.admin, json=pipeline).status_code == 200
    apply(client, tenant, "welcome-series")
    apply(client, tenant, "lead-scoring")
    activate(client, tenant, {  # decay taking the score back under 50 is a crossing too
        "key": "cooled", "triggers": [{"score_crossed": {"score": "engagement", "threshold": 50,
                                                         "direction": "down"}}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "cool", "type": "add_tag", "tag": "cooled"}]})
    client.post("/v1/identify", headers=tenant.write, json={
        "userId": "ada", "traits": {"email": "ada@example.com", "firstName": "Ada",
                                    "country": "DE", "job_title": "Head of Ops"}})
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": "ada"}).json()["id"]
    r = client.put(f"/contacts/{cid}/lists/newsletter", headers=tenant.admin,
                   json={"status": "subscribed"})
    assert r.status_code == 200, r.text
    settle(conveyor)

    # Two tracked clicks in the welcome email: +5 each.
    [welcome] = mail.to("ada@example.com")
    tracked = [u for u in links_in(welcome.part("html")) if "/t/c/" in u]
    for url in tracked:
        assert client.get(local(url, server), follow_redirects=False).status_code == 302
    settle(conveyor)
    now = scores(client, tenant, cid)
    assert now["engagement"]["value"] == 10
    assert now["fit"]["value"] == 25  # DACH 15 + decision-maker 10; company size unknown

    # Three pricing visits (one elsewhere does not count): 40, then the fourth crosses 50.
    visit(client, tenant, "ada", "https://shop.example/about")
    for _ in range(3):
        visit(client, tenant, "ada", "https://shop.example/pricing")
    settle(conveyor)
    assert scores(client, tenant, cid)["engagement"]["value"] == 40
    assert mail.to("sales@acme-shop.com") == []
    visit(client, tenant, "ada", "https://shop.example/pricing?plan=pro")
    visit(client, tenant, "ada", "https://shop.example/pricing")
    settle(conveyor)
    assert scores(client, tenant, cid)["engagement"]["value"] == 60
    [note] = mail.to("sales@acme-shop.com")
    assert note.message["Subject"] == "lead-scoring: Ada"
    contact = client.get(f"/contacts/{cid}", headers=tenant.admin).json()
    assert "hot-lead" in contact["tags"] and "cooled" not in contact["tags"]
    assert crossings(client, tenant, cid, "engagement", 50) == ["up"]
    [deal] = client.get("/deals", headers=tenant.admin, params={"contact": cid}).json()
    assert (deal["pipeline"], deal["stage"], deal["status"]) == ("sales", "Qualified", "open")

    # 30 days later the score has halved; it went under 50 on the way, once.
    clock.advance(timedelta(days=30))
    settle(conveyor)
    explained = scores(client, tenant, cid)["engagement"]
    assert explained["value"] == pytest.approx(30, abs=1e-6)
    rules = {r["rule"]: r for r in explained["rules"]}
    assert rules["email-click"]["points"] == 10 and rules["email-click"]["awards"] == 2
    assert rules["email-click"]["now"] == pytest.approx(5, abs=1e-3)
    assert rules["pricing-visit"]["points"] == 50
    assert rules["pricing-visit"]["now"] == pytest.approx(25, abs=1e-3)
    assert crossings(client, tenant, cid, "engagement", 50) == ["up", "down"]
    assert "cooled" in client.get(f"/contacts/{cid}", headers=tenant.admin).json()["tags"]
    assert scores(client, tenant, cid)["fit"]["value"] == 25  # fit does not decay

    # Back over 50: a second upward crossing, but the lead was handed over once (repeat: once).
    for _ in range(3):
        visit(client, tenant, "ada", "https://shop.example/pricing")
    settle(conveyor)
    assert crossings(client, tenant, cid, "engagement", 50) == ["up", "down", "up"]
    assert len(mail.to("sales@acme-shop.com")) == 1
    assert len(client.get("/deals", headers=tenant.admin, params={"contact": cid}).json()) == 1
    steps = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin,
                       params={"limit": 500}).json()["items"]
    skipped = [s for s in steps if s["automation"] == "lead-scoring"
               and s["outcome"] == "entry_skipped"]
    assert len(skipped) == 1


def test_clicks_are_capped_per_window_and_conditions_segments_and_templates_see_scores(
    client, tenant, conveyor, clock, model
):
    client.post("/v1/identify", headers=tenant.write,
                json={"userId": "bo", "traits": {"email": "bo@example.com"}})
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": "bo"}).json()["id"]
    for _ in range(6):  # 30 points of clicks, capped at 20 per 30 days
        client.post("/v1/track", headers=tenant.write,
                    json={"userId": "bo", "event": "email.clicked", "properties": {}})
    settle(conveyor)
    assert scores(client, tenant, cid)["engagement"]["value"] == 20
    r = client.post("/segments", headers=tenant.admin, json={
        "key": "engaged", "condition": {"score": "engagement", "op": "gte", "value": 15}})
    assert r.status_code == 201, r.text
    assert client.get("/segments/engaged/count", headers=tenant.admin).json()["count"] == 1

    # 31 days on: the window has passed (clicks count again), and the old points have decayed.
    clock.advance(timedelta(days=31))
    conveyor.segments.sweep()
    settle(conveyor)
    assert client.get("/segments/engaged/count", headers=tenant.admin).json()["count"] == 0
    member = client.get("/segments/engaged/members", headers=tenant.admin).json()["items"]
    assert member == []
    client.post("/v1/track", headers=tenant.write,
                json={"userId": "bo", "event": "email.clicked", "properties": {}})
    settle(conveyor)
    value = scores(client, tenant, cid)["engagement"]["value"]
    assert value == pytest.approx(20 * 2 ** (-31 / 30) + 5, abs=1e-3)

    # Templates see the named scores (rounded) beside the contact's own score.
    r = client.post("/templates", headers=tenant.admin, json={
        "key": "score-note", "channel": "team",
        "content": {"subject": "Lead", "text": "engagement {{ contact.scores.engagement }}"}})
    assert r.status_code == 200, r.text
    r = client.post("/templates/score-note/preview", headers=tenant.admin, json={"contact_id": cid})
    assert r.status_code == 200, r.text
    assert f"engagement {round(value, 2)}" in str(r.json())


def test_a_model_change_recomputes_from_the_log_and_adjust_score_names_a_score(
    client, tenant, conveyor, clock, model
):
    activate(client, tenant, {
        "key": "bonus", "triggers": [{"event": "webinar_attended"}],
        "entry": {"repeat": "every_time"},
        "nodes": [{"id": "bonus", "type": "adjust_score", "score": "engagement", "by": 7},
                  {"id": "legacy", "type": "adjust_score", "by": 2}]})
    client.post("/v1/track", headers=tenant.write,
                json={"userId": "cy", "event": "webinar_attended", "properties": {}})
    client.post("/v1/track", headers=tenant.write,
                json={"userId": "cy", "event": "email.clicked", "properties": {}})
    settle(conveyor)
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": "cy"}).json()["id"]
    assert scores(client, tenant, cid)["engagement"]["value"] == 12
    assert client.get(f"/contacts/{cid}", headers=tenant.admin).json()["score"] == 2

    changed = {**MODEL, "scores": {**MODEL["scores"]}}
    changed["scores"]["engagement"] = {
        "decay": {"percent": 50, "per": "30 days"},
        "rules": [{"id": "email-click", "event": "email.clicked", "points": 1}],
    }
    r = client.put("/scoring-model", headers=tenant.admin, json=changed)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert scores(client, tenant, cid)["engagement"]["value"] == 8  # 1 + the 7 adjusted
    client.post("/v1/track", headers=tenant.write,  # the worker follows the new model too
                json={"userId": "cy", "event": "email.clicked", "properties": {}})
    settle(conveyor)
    assert scores(client, tenant, cid)["engagement"]["value"] == 9
    clock.advance(timedelta(days=30))
    assert scores(client, tenant, cid)["engagement"]["value"] == pytest.approx(4.5)


@pytest.mark.parametrize(("change", "field"), [
    ({"engagement": {"decay": {"half_life": "-3 days"}, "rules": []}},
     "scores.engagement.decay.half_life"),
    ({"engagement": {"decay": {"half_life": 0}, "rules": []}}, "scores.engagement.decay.half_life"),
    ({"engagement": {"decay": {"percent": 120, "per": "30 days"}}},
     "scores.engagement.decay.percent"),
    ({"engagement": {"rules": [{"event": "email.clicked", "points": 5,
                                "cap": {"points": 20, "per": 0}}]}},
     "scores.engagement.rules.0.cap.per"),
    ({"engagement": {"rules": [{"event": "email.clicked", "points": 5,
                                "cap": {"points": 20, "per": "0 days"}}]}},
     "scores.engagement.rules.0.cap.per"),
    ({"engagement": {"rules": [{"event": "page", "where": [
        {"property": "url", "op": "like", "value": "*pricing*"}], "points": 5}]}},
     "scores.engagement.rules.0.where.0.op"),
    ({"engagement": {"rules": [{"when": {"field": "nope", "op": "eq", "value": 1},
                                "points": 5}]}}, "scores.engagement.rules.0.when.field"),
    ({"engagement": {"rules": [{"event": "x", "points": "many"}]}},
     "scores.engagement.rules.0.points"),
    ({"score": {"rules": []}}, "scores.score"),
])
def test_bad_models_are_refused_naming_the_field(client, tenant, change, field):
    r = client.put("/scoring-model", headers=tenant.admin, json={"scores": change})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field
    assert client.get("/scoring-model", headers=tenant.admin).status_code == 404


def test_conditions_on_unknown_scores_are_refused(client, tenant, model):
    r = client.post("/segments", headers=tenant.admin, json={
        "key": "x", "condition": {"score": "nope", "op": "gte", "value": 1}})
    assert r.status_code == 422 and r.json()["field"] == "condition.score"
    r = client.post("/automations", headers=tenant.admin, json={
        "key": "x", "triggers": [{"score_crossed": {"threshold": 5, "direction": "sideways"}}],
        "nodes": [{"id": "a", "type": "add_tag", "tag": "t"}]})
    assert r.status_code == 422 and r.json()["field"] == "triggers.0.score_crossed.direction"


def test_a_merged_visitors_points_move_to_the_kept_contact(client, tenant, conveyor, model):
    client.post("/v1/identify", headers=tenant.write,
                json={"userId": "dee", "traits": {"email": "dee@example.com"}})
    visit(client, tenant, "dee", "https://shop.example/pricing")
    for _ in range(2):
        r = client.post("/v1/page", headers=tenant.write, json={
            "anonymousId": "anon-9", "properties": {"url": "https://shop.example/pricing"}})
        assert r.status_code == 200, r.text
    settle(conveyor)
    client.post("/v1/identify", headers=tenant.write,
                json={"userId": "dee", "anonymousId": "anon-9"})
    settle(conveyor)
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": "dee"}).json()["id"]
    explained = scores(client, tenant, cid)["engagement"]
    assert explained["value"] == 30
    assert {r["rule"]: r["awards"] for r in explained["rules"]} == {"pricing-visit": 3}
    contact = client.get(f"/contacts/{cid}", headers=tenant.admin).json()
    assert contact["scores"] == {"engagement": 30.0, "fit": 0.0}


@pytest.mark.parametrize(("automation", "field"), [
    ({"triggers": [{"score_crossed": {"score": "nope", "threshold": 5}}],
      "nodes": [{"id": "a", "type": "add_tag", "tag": "t"}]}, "triggers.0.score_crossed.score"),
    ({"triggers": [{"event": "x"}],
      "nodes": [{"id": "a", "type": "adjust_score", "score": "nope", "by": 5}]}, "nodes.0.score"),
    ({"triggers": [{"event": "x"}],
      "nodes": [{"id": "a", "type": "if", "condition": {"score": "nope", "value": 5},
                 "then": "b", "else": "b"}, {"id": "b", "type": "end"}]},
     "nodes.0.condition.score"),
])
def test_automations_naming_unknown_scores_are_refused(client, tenant, model, automation, field):
    r = client.post("/automations", headers=tenant.admin, json={"key": "x", **automation})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
