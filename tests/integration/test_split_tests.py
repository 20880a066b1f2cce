"""Scenario 10 end to end: two subject lines 50/50; after 500+ recipients per path the path whose
click rate is significantly better wins, and every later contact takes it.

Real delivery (aiosmtpd), real tracking links followed over HTTP, the API, the simulated clock,
on SQLite and PostgreSQL. The winner is decided by `domain.experiments.decide` (mSPRT)."""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.flows import settle
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEY = "subject-line-test"
SUBJECT_A = "Spring sale: 20% off everything"
CLICK_RATE = {"A": 0.06, "B": 0.16}


@pytest.fixture
def mail(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Acme Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    for template in yaml.safe_load((EXAMPLES / "templates" / "scenarios.yaml").read_text()):
        if template["key"].startswith("spring-sale"):
            r = client.post("/templates", headers=tenant.admin, json=template)
            assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def sign_up(client, tenant, first: int, count: int) -> None:
    for start in range(first, first + count, 100):
        calls = []
        for i in range(start, min(start + 100, first + count)):
            calls += [
                {"type": "identify", "userId": f"u{i}",
                 "traits": {"email": f"u{i}@example.com", "first_name": f"U{i}"}},
                {"type": "track", "userId": f"u{i}", "event": "signed_up"},
            ]
        r = client.post("/v1/batch", headers=tenant.write, json={"batch": calls})
        assert r.status_code == 200 and not r.json()["errors"], r.text


def path_of(received) -> str:
    return "A" if received.message["Subject"] == SUBJECT_A else "B"


def click(client, server, received) -> None:
    import re

    html = received.part("html")
    link = next(u for u in re.findall(r'href="([^"]+)"', html) if "/t/c/" in u)
    parts = urlsplit(link)
    r = client.get(f"{server.url}{parts.path}", follow_redirects=False)
    assert r.status_code == 302, r.text


def experiments(client, tenant):
    r = client.get(f"/automations/{KEY}/experiments", headers=tenant.admin)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_scenario_10_the_better_subject_line_wins_and_takes_every_later_contact(
    client, server, tenant, conveyor, clock, mail, database_url, tmp_path, monkeypatch
):
    definition = yaml.safe_load((EXAMPLES / "automations" / f"{KEY}.yaml").read_text())
    assert client.post("/automations", headers=tenant.admin, json=definition).status_code == 200
    r = client.patch(f"/automations/{KEY}", headers=tenant.admin, json={"status": "active"})
    assert r.status_code == 200, r.text
    [waiting] = experiments(client, tenant)
    assert (waiting["status"], waiting["test"]["min_sample"]) == ("waiting", 500)

    # 300 sign-ups: below the minimum sample on both paths, nothing is decided.
    rng = random.Random(10)
    sign_up(client, tenant, 0, 300)
    settle(conveyor)
    clicked = {"A": 0, "B": 0}
    sent = {"A": 0, "B": 0}

    def click_some(messages) -> None:
        for received in messages:
            path = path_of(received)
            sent[path] += 1
            if rng.random() < CLICK_RATE[path]:
                clicked[path] += 1
                click(client, server, received)

    click_some(mail.handler.messages)
    r = client.post(f"/automations/{KEY}/experiments/check", headers=tenant.admin)
    assert r.status_code == 200 and r.json()["decided"] == 0, r.text
    [early] = r.json()["items"]
    assert early["status"] == "collecting" and early["winner"] is None
    assert "of 500 contacts on the smallest path" in early["decision"]["reason"]

    # 900 more: each path is past 500 recipients, with its clicks.
    sign_up(client, tenant, 300, 900)
    settle(conveyor)
    click_some(mail.handler.messages[300:])
    assert min(sent.values()) >= 500 and sum(sent.values()) == 1200
    settle(conveyor)
    r = client.post(f"/automations/{KEY}/experiments/check", headers=tenant.admin)
    assert r.status_code == 200, r.text
    assert r.json()["decided"] == 1, (sent, clicked, r.json()["items"][0]["decision"])
    [test] = experiments(client, tenant)
    decision = test["decision"]
    assert (test["status"], test["winner"], decision["rule"]) == ("decided", "B", "significant")
    arms = {a["name"]: a for a in decision["arms"]}
    assert {n: a["entered"] for n, a in arms.items()} == sent  # steps = recipients here
    assert {n: a["converted"] for n, a in arms.items()} == clicked  # real clicks, per path
    [comparison] = decision["comparisons"]
    assert comparison["arm"] == "B" and comparison["baseline"] == "A"
    assert comparison["interval"][0] > 0 and comparison["lift"] > 0
    assert comparison["likelihood_ratio"] >= decision["threshold"] == 20
    assert test["decided_at"] is not None
    stats = client.get(f"/automations/{KEY}/stats", headers=tenant.admin).json()
    node = stats["nodes"]["subject-test"]
    assert node["outcomes"] == sent and node["experiment"]["winner"] == "B"
    events = client.get("/events", headers=tenant.admin,
                        params={"name": "experiment.decided"}).json()["items"]
    assert [(e["properties"]["automation"], e["properties"]["winner"]) for e in events] == [
        (KEY, "B")
    ]

    # Every later contact takes the winner, and the timeline says why.
    before = len(mail.handler.messages)
    sign_up(client, tenant, 1200, 60)
    settle(conveyor)
    later = mail.handler.messages[before:]
    assert len(later) == 60 and {path_of(m) for m in later} == {"B"}
    cid = client.get("/contacts/lookup", headers=tenant.admin,
                     params={"external_id": "u1250"}).json()["id"]
    items = client.get(f"/contacts/{cid}/timeline", headers=tenant.admin).json()["items"]
    split = next(i for i in items if i.get("node") == "subject-test")
    assert "winner of this split test" in str(split)

    # The simulator runs the engine's own tick, handed the stored decision: a contact who took A
    # before the decision takes B when the same automation is tried for it now.
    was_a = next(m for m in mail.handler.messages[:before] if path_of(m) == "A")
    user = was_a.recipients[0].split("@")[0]
    cid_a = client.get("/contacts/lookup", headers=tenant.admin,
                       params={"external_id": user}).json()["id"]
    r = client.post(f"/contacts/{cid_a}/simulate", headers=tenant.admin, json={
        "definition": definition, "events": [{"at": "1 minute", "event": "signed_up"}],
        "days": 1,
    })
    assert r.status_code == 200, r.text
    steps = [(s["node"], s["outcome"]) for s in r.json()["contact"]["steps"]]
    assert ("subject-test", "B") in steps and ("subject-test", "A") not in steps

    # The command line shows the same decision.
    from typer.testing import CliRunner

    from conveyor.cli.main import app

    monkeypatch.setenv("CONVEYOR_DATABASE_URL", database_url)
    monkeypatch.setenv("CONVEYOR_DATA_DIR", str(tmp_path))
    shown = CliRunner().invoke(app, ["experiments", "show", KEY, "-w", "acme"])
    assert shown.exit_code == 0, shown.output
    assert f"{KEY} / subject-test: decided, winner B" in shown.output
    assert "B vs A: +" in shown.output

    # Checking again changes nothing: the decision is final.
    r = client.post(f"/automations/{KEY}/experiments/check", headers=tenant.admin)
    assert r.json()["decided"] == 0 and r.json()["items"][0]["decided_at"] == test["decided_at"]


def test_a_bad_test_names_its_field(client, tenant):
    definition = yaml.safe_load((EXAMPLES / "automations" / f"{KEY}.yaml").read_text())
    for change, field in [
        ({"metric": "opened"}, "nodes.0.test.metric"),
        ({"min_sample": 3}, "nodes.0.test.min_sample"),
        ({"fallback": "coin"}, "nodes.0.test.fallback"),
        ({"window": "soon"}, "nodes.0.test.window"),
        ({"event": "order_completed"}, "nodes.0.test.event"),
        ({"colour": "red"}, "nodes.0.test.colour"),
    ]:
        bad = yaml.safe_load(yaml.safe_dump(definition))
        bad["nodes"][0]["test"].update(change)
        r = client.post("/automations", headers=tenant.admin, json=bad)
        assert r.status_code == 422, (change, r.text)
        assert r.json()["field"] == field, (change, r.json())
    r = client.get("/automations/nope/experiments", headers=tenant.admin)
    assert r.status_code == 404


@pytest.mark.parametrize("metric", ["converted", "condition"])
def test_orders_within_the_window_decide_a_test(client, tenant, conveyor, clock, metric):
    from datetime import timedelta

    test = {"metric": metric, "window": "2 days", "min_sample": 40, "fallback": "keep"}
    split = {"id": "pick", "type": "split", "test": test, "paths": [
        {"name": "A", "weight": 1, "next": "a"}, {"name": "B", "weight": 1, "next": "b"}]}
    if metric == "condition":
        split["condition"] = {"event": "order_completed", "within": "since_entry"}
    definition = {"key": "checkout-test", "triggers": [{"event": "signed_up"}], "nodes": [
        split, {"id": "a", "type": "add_tag", "tag": "path-a", "next": "end"},
        {"id": "b", "type": "add_tag", "tag": "path-b", "next": "end"}]}
    assert client.post("/automations", headers=tenant.admin, json=definition).status_code == 200
    client.patch("/automations/checkout-test", headers=tenant.admin, json={"status": "active"})
    sign_up(client, tenant, 0, 200)
    settle(conveyor)
    paths = {}
    for i in range(200):
        c = client.get("/contacts/lookup", headers=tenant.admin,
                       params={"external_id": f"u{i}"}).json()
        paths[f"u{i}"] = "A" if "path-a" in c["tags"] else "B"
    rng = random.Random(5)
    buyers = [u for u, p in paths.items() if rng.random() < (0.05 if p == "A" else 0.45)]
    clock.advance(timedelta(hours=1))
    calls = [{"type": "track", "userId": u, "event": "order_completed"} for u in buyers]
    assert client.post("/v1/batch", headers=tenant.write, json={"batch": calls}).status_code == 200
    clock.advance(timedelta(days=3))  # past the window: these orders do not count
    late = [u for u, p in paths.items() if p == "A" and u not in buyers][:30]
    calls = [{"type": "track", "userId": u, "event": "order_completed"} for u in late]
    assert client.post("/v1/batch", headers=tenant.write, json={"batch": calls}).status_code == 200
    settle(conveyor)
    r = client.post("/automations/checkout-test/experiments/check", headers=tenant.admin)
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    arms = {a["name"]: a for a in item["decision"]["arms"]}
    for name in ("A", "B"):
        assert arms[name]["entered"] == sum(p == name for p in paths.values())
        assert arms[name]["converted"] == sum(paths[u] == name for u in buyers)
    assert (item["status"], item["winner"]) == ("decided", "B")
