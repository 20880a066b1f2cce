"""`/metrics` moves with a seeded workload: tracking calls, steps, deliveries (sent, failed),
send-policy deferrals, and the gauges read from the database (log lag, due runs, outbox)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.flows import activate, settle
from tests.support.smtp import SmtpSink


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put("/channels/email", headers=tenant.admin,
                   json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url})
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def scrape(client) -> dict[tuple[str, frozenset], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(r.text)
        for sample in family.samples
    }


def value(metrics, name: str, **labels: str) -> float:
    return metrics.get((name, frozenset(labels.items())), 0.0)


def total(metrics, name: str, **labels: str) -> float:
    """The sum over every series of `name` carrying these labels (others free)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and wanted <= ls)


def test_a_seeded_workload_moves_the_metrics(client, tenant, conveyor, clock, smtp):
    smtp.handler.refuse["gone@example.com"] = "550 5.1.1 No such user"
    assert client.put("/send-policy", headers=tenant.admin, json={
        "caps": {"email": [{"max": 1, "per": "16 hours"}]}}).status_code == 200
    for key in ("welcome", "tips"):
        r = client.post("/templates", headers=tenant.admin, json={
            "key": key, "channel": "email", "content": {"subject": key, "text": f"{key}!"}})
        assert r.status_code == 200, r.text
        activate(client, tenant, {
            "key": key, "triggers": [{"event": "signed_up"}],
            "nodes": [{"id": "mail", "type": "send_email", "template": key},
                      {"id": "tag", "type": "add_tag", "tag": f"got-{key}"}]})
    settle(conveyor)  # the log's consumers have started (their cursors exist)
    before = scrape(client)

    people = ["ada@example.com", "bob@example.com", "gone@example.com"]
    batch = [{"type": "identify", "userId": p, "traits": {"email": p}} for p in people]
    batch += [{"type": "track", "userId": p, "event": "signed_up"} for p in people]
    assert client.post("/v1/batch", headers=tenant.write, json={"batch": batch}).status_code == 200
    waiting = scrape(client)
    settle(conveyor)
    after = scrape(client)

    # In this process: the request, what it ingested, what the engine and delivery did.
    ok = {"method": "POST", "route": "/v1/batch", "status": "200"}
    assert value(after, "conveyor_http_requests_total", **ok) == \
        value(before, "conveyor_http_requests_total", **ok) + 1
    assert value(after, "conveyor_http_request_duration_seconds_count", route="/v1/batch") == \
        value(before, "conveyor_http_request_duration_seconds_count", route="/v1/batch") + 1
    for kind in ("identify", "track"):
        grew = (value(after, "conveyor_events_ingested_total", type=kind)
                - value(before, "conveyor_events_ingested_total", type=kind))
        assert grew == 3, kind
    steps = {
        node_type: total(after, "conveyor_steps_total", node_type=node_type)
        - total(before, "conveyor_steps_total", node_type=node_type)
        for node_type in ("send_email", "add_tag")
    }
    assert steps["send_email"] >= 6 and steps["add_tag"] >= 6, steps  # 2 automations × 3 people
    delivered = {
        outcome: value(after, "conveyor_deliveries_total", channel="email", outcome=outcome)
        - value(before, "conveyor_deliveries_total", channel="email", outcome=outcome)
        for outcome in ("sent", "failed")
    }
    assert delivered == {"sent": len(smtp.messages), "failed": 1}, delivered
    assert len(smtp.messages) == 2  # one of two emails each (the cap), none to the refused address
    timed = {
        result: value(after, "conveyor_delivery_provider_seconds_count", channel="email", result=result)
        - value(before, "conveyor_delivery_provider_seconds_count", channel="email", result=result)
        for result in ("ok", "error")
    }
    assert timed == {"ok": 2, "error": 1}
    waited = (value(after, "conveyor_outbox_wait_seconds_count", channel="email")
              - value(before, "conveyor_outbox_wait_seconds_count", channel="email"))
    assert waited == 2  # one observation per message sent
    entered = (value(after, "conveyor_runs_advanced_total", why="entered")
               - value(before, "conveyor_runs_advanced_total", why="entered"))
    assert entered == 6  # 2 automations × 3 people, each advanced as it entered
    held = (value(after, "conveyor_send_policy_holds_total", channel="email", action="deferred")
            - value(before, "conveyor_send_policy_holds_total", channel="email", action="deferred"))
    assert held >= 2  # each person's second email waits 16 hours (the cap counts tries)

    # Read from the database at scrape time.
    assert value(waiting, "conveyor_event_log_lag", consumer="engine") >= 6
    assert value(after, "conveyor_event_log_lag", consumer="engine") == 0
    assert value(after, "conveyor_event_log_head") > value(before, "conveyor_event_log_head")
    assert value(after, "conveyor_outbox_messages", channel="email", state="sent") == 2
    assert value(after, "conveyor_outbox_messages", channel="email", state="failed") == 1
    assert value(after, "conveyor_outbox_messages", channel="email", state="pending") == held == 3
    assert value(after, "conveyor_database_up") == 1
    assert value(after, "conveyor_db_pool_connections", state="open") >= 1
    assert 0 <= value(after, "conveyor_db_pool_connections", state="in_use") <= value(
        after, "conveyor_db_pool_connections", state="open")

    # Runs waiting on a timer show as due once their moment passes.
    activate(client, tenant, {"key": "later", "triggers": [{"event": "upgraded"}],
                              "nodes": [{"id": "pause", "type": "wait", "for": "1 hour"},
                                        {"id": "tag", "type": "add_tag", "tag": "later"}]})
    client.post("/v1/track", headers=tenant.write, json={"userId": "ada@example.com",
                                                          "event": "upgraded"})
    conveyor.engine.dispatch()
    assert value(scrape(client), "conveyor_runs_due") == 0
    clock.advance(timedelta(hours=2))
    due = scrape(client)
    assert value(due, "conveyor_runs_due") == 1
    conveyor.engine.execute()
    done = scrape(client)
    assert value(done, "conveyor_runs_due") == 0
    for name, labels in (("conveyor_runs_claimed_total", {}),
                         ("conveyor_runs_advanced_total", {"why": "due"})):
        assert value(done, name, **labels) == value(due, name, **labels) + 1, name
