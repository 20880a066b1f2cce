"""A backtest over a period where the automation really ran predicts its real outcome (entries,
sends per day, goal rate) within 5 %, on a generated shop where another automation competes for
the same inbox under caps: the draft is simulated alone, the other's real sends count against
the caps as they happened."""

from __future__ import annotations

from collections import Counter

import pytest
from benchmarks import history

from conveyor.services.simulate import Scope
from tests.support.smtp import SmtpSink

DAYS, CONTACTS = 8, 200


@pytest.fixture
def smtp():
    sink = SmtpSink().start()
    yield sink
    sink.stop()


def within(predicted, real, share=0.05):
    return abs(predicted - real) <= share * max(real, 1)


def test_a_backtest_predicts_what_really_happened(conveyor, clock, smtp):
    workspace, _ = conveyor.workspaces.create("shop")
    conveyor.channels.configure(
        workspace, "email", {"from": "Shop <news@shop.example>", "smtp_url": smtp.url}
    )
    workspace = history.setup(conveyor, conveyor.workspaces.get("shop"), CONTACTS, active=True)
    start = clock.now()
    history.run(
        conveyor, clock, workspace, history.plan(CONTACTS, DAYS), DAYS, live=True, deliver=True
    )
    end = clock.now()
    report = conveyor.simulator.backtest(workspace, Scope(history.CART), start, end)
    predicted = report.tallies["abandoned-cart"]

    with conveyor.store.read() as tx:
        cart = tx.automations.by_key(workspace.id, "abandoned-cart").id
        entered = [
            e
            for e in tx.events.replay(workspace.id, 0, 10**9, 10**6)
            if e.name == "automation.entered" and e.properties["automation"] == "abandoned-cart"
        ]
        goals = [
            e
            for e in tx.events.replay(workspace.id, 0, 10**9, 10**6)
            if e.name == "automation.goal_reached"
            and e.properties["automation"] == "abandoned-cart"
        ]
        sent = Counter(
            report.day(m.sent_at)
            for m in tx.messages.page(workspace.id, limit=10**6)
            if m.automation_id == cart and m.status == "sent"
        )
    real_entries = len(entered)
    assert real_entries > 50 and sum(sent.values()) > 30  # a real sample, not a trivial one
    assert within(sum(predicted.entered.values()), real_entries)
    assert within(predicted.sent, sum(sent.values()))
    for day in sorted(set(sent) | set(predicted.sent_per_day)):
        assert within(predicted.sent_per_day[day], sent[day], 0.05), (
            day,
            predicted.sent_per_day,
            sent,
        )
    real_rate = len(goals) / real_entries
    predicted_rate = sum(predicted.goals.values()) / sum(predicted.entered.values())
    assert abs(predicted_rate - real_rate) <= 0.05
    assert predicted.deferred > 0  # the caps held some back, in the prediction as in reality
