"""Backtests through the service and the API: a simulation from the log yields what the live
engine did (entries, steps with their reasons, messages), and writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from conveyor.services.simulate import Scope
from tests.support.flows import activate, save_template, settle
from tests.support.simulation import (
    live_messages,
    live_paths,
    simulated_messages,
    simulated_paths,
)
from tests.support.smtp import SmtpSink

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "automations"


@pytest.fixture
def smtp(client, tenant):
    sink = SmtpSink().start()
    r = client.put(
        "/channels/email",
        headers=tenant.admin,
        json={"from": "Shop <news@acme-shop.com>", "smtp_url": sink.url},
    )
    assert r.status_code == 200, r.text
    yield sink
    sink.stop()


def _templates(client, tenant, *keys):
    for key in keys:
        save_template(
            client,
            tenant,
            {"key": key, "channel": "email", "content": {"subject": key, "text": key}},
        )


def _contacts(client, tenant, *users):
    for user in users:
        r = client.post(
            "/contacts",
            headers=tenant.admin,
            json={"external_id": user, "email": f"{user}@example.com"},
        )
        assert r.status_code == 201, r.text


def _written(conveyor):
    with conveyor.store.read() as tx:
        ws = tx.workspaces.all()[0].id
        return {
            "events": tx.events.position_at(ws, datetime.max.replace(tzinfo=UTC)),
            "outbox": len(tx.messages.page(ws, limit=10_000)),
            "sent": len(tx.messages.page(ws, status="sent", limit=10_000)),
            "runs": sorted(
                r.id
                for r in tx.automations.of_contacts(range(1, 10), ("active", "queued", "finished"))
            ),
        }


def _definition(name):
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def _track(client, tenant, user, event, **properties):
    r = client.post(
        "/v1/track",
        headers=tenant.write,
        json={"userId": user, "event": event, "properties": properties},
    )
    assert r.status_code == 200, r.text


def _id(client, tenant, user):
    r = client.get("/contacts/lookup", headers=tenant.admin, params={"external_id": user})
    return r.json()["id"]


def test_a_backtest_of_the_abandoned_cart_equals_what_ran_live(
    client, tenant, conveyor, clock, smtp
):
    start = clock.now()
    _templates(client, tenant, "cart-reminder-1", "cart-reminder-2", "promo")
    r = client.put(
        "/send-policy",
        headers=tenant.admin,
        json={"caps": {"email": [{"max": 1, "per": "16 hours"}]}},
    )
    assert r.status_code == 200, r.text
    activate(client, tenant, _definition("abandoned-cart"))
    activate(
        client,
        tenant,
        {
            "key": "promo",
            "triggers": [{"event": "order_completed"}],
            "nodes": [
                {"id": "wait", "type": "wait", "for": "2 hours"},
                {"id": "offer", "type": "send_email", "template": "promo"},
            ],
        },
    )
    _contacts(client, tenant, "ada", "bob", "cy")
    clock.advance(timedelta(minutes=1))
    plan = {
        0: [("ada", "cart_updated"), ("bob", "cart_updated"), ("cy", "cart_updated")],
        1: [("bob", "order_completed")],
        30: [("cy", "order_completed")],
        50: [("ada", "cart_updated")],
    }
    for hour in range(72):
        for user, event in plan.get(hour, []):
            _track(client, tenant, user, event, total=10)
        settle(conveyor)
        clock.advance(timedelta(hours=1))
    users = [_id(client, tenant, u) for u in ("ada", "bob", "cy")]
    before = _written(conveyor)
    report = conveyor.simulator.backtest(
        tenant.workspace, Scope(with_active=True, watch=None), start, clock.now()
    )
    assert _written(conveyor) == before  # nothing written, nothing sent
    assert len(smtp.messages) == before["sent"]
    assert simulated_paths(report, users) == live_paths(conveyor, tenant.workspace.id, users)
    assert simulated_messages(report, users) == live_messages(conveyor, tenant.workspace.id, users)
    tally = report.tallies["abandoned-cart"]
    assert sum(tally.entered.values()) == 4
    assert tally.goals == {"ordered": 1}  # bob; cy ordered after the reminders ended
    # The cap held the promo back, in the simulation as it did live, and it says why.
    promo = report.tallies["promo"]
    assert promo.policy == {("defer", "email cap 1 per 16 hours"): 1}
    assert report.collisions == {("promo", "abandoned-cart"): 1}
