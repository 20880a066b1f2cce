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
    client, server, tenant, conveyor, clock, mail
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
