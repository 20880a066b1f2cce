"""Advancing a run, pure: node after node until a wait or the end; exits and goals first."""

from __future__ import annotations

from datetime import timedelta

from conveyor.domain.automations import ContactChange, Record, Send
from conveyor.domain.automations.run import MAX_STEPS, advance
from conveyor.domain.evaluation import Evaluator

from .conftest import NOW, RULES, automation, facts, run_at

EV = Evaluator()
LEAD = """
key: lead
triggers: [{event: pricing_viewed}]
nodes:
  - {id: check, type: if, condition: {event: pricing_viewed}, then: tag, else: end}
  - {id: tag, type: add_tag, tag: lead}
  - {id: seen, type: if, condition: {tag: lead}, then: mail, else: end}
  - {id: mail, type: send_email, template: hello}
  - {id: wait, type: wait, for: 1 day}
  - {id: score, type: adjust_score, by: 5}
"""


def test_nodes_until_a_wait_with_changes_seen_by_later_conditions():
    a = automation(LEAD)
    snap = facts(events=[("pricing_viewed", {})])
    out = advance(a, run_at("check"), snap, NOW, EV, RULES)
    assert [(s.node, s.outcome) for s in out.logged] == [
        ("check", "then"), ("tag", "done"), ("seen", "then"), ("mail", "queued"), ("wait", "waiting"),
    ]  # fmt: skip
    assert [(d.node, d.step, type(d.effect)) for d in out.effects] == [
        ("tag", 2, ContactChange),
        ("mail", 4, Send),
    ]
    assert (out.node, out.wake_at, out.outcome, out.steps) == (
        "wait",
        NOW + timedelta(days=1),
        None,
        5,
    )
    assert "lead" in snap.tags  # the facts follow the run's own changes


def test_after_the_wait_to_the_end():
    a = automation(LEAD)
    first = advance(a, run_at("check"), facts(events=[("pricing_viewed", {})]), NOW, EV, RULES)
    later = NOW + timedelta(days=1)
    run = run_at("wait", state=first.state, steps=first.steps)
    snap = facts(tags={"lead"}, score=1)
    out = advance(a, run, snap, later, EV, RULES)
    assert [(s.node, s.outcome) for s in out.logged] == [("wait", "waited"), ("score", "done")]
    assert out.outcome == "completed" and snap.score == 6


def test_a_wait_logs_once_not_at_every_wake_up():
    a = automation(LEAD)
    first = advance(a, run_at("check"), facts(events=[("pricing_viewed", {})]), NOW, EV, RULES)
    again = advance(
        a, run_at("wait", state=first.state), facts(), NOW + timedelta(hours=1), EV, RULES
    )
    assert again.logged == [] and again.wake_at == first.wake_at


def test_the_exit_condition_comes_first():
    a = automation(LEAD + "exit_when: {tag: unsubscribed-all}\n")
    out = advance(a, run_at("check"), facts(tags={"unsubscribed-all"}), NOW, EV, RULES)
    assert out.outcome == "exited" and [s.outcome for s in out.logged] == ["exited"]


def test_a_goal_ahead_is_jumped_to_with_its_event():
    a = automation(
        """
key: cart
triggers: [{event: cart_updated}]
nodes:
  - {id: wait, type: wait, for: 1 hour}
  - {id: remind, type: send_email, template: cart}
  - {id: bought, type: goal, condition: {event: order_completed}}
  - {id: thanks, type: add_tag, tag: buyer}
"""
    )
    snap = facts(events=[("order_completed", {})])
    out = advance(a, run_at("wait"), snap, NOW, EV, RULES)
    assert [(s.node, s.outcome) for s in out.logged] == [
        ("bought", "goal_reached"),
        ("thanks", "done"),
    ]
    assert out.effects[0].effect == Record(
        "automation.goal_reached", {"automation": "cart", "goal": "bought"}
    )
    assert out.outcome == "completed"


def test_a_change_that_cannot_apply_is_a_failed_step_and_no_effect():
    a = automation(
        "key: f\ntriggers: [{event: go}]\nnodes: [{id: s, type: set_field, field: visits, value: lots}]\n"
    )
    out = advance(a, run_at("s"), facts(), NOW, EV, RULES)
    assert [(s.outcome) for s in out.logged] == ["done", "failed"]
    assert out.effects == [] and out.outcome == "completed"


def test_a_list_subscription_trigger_scopes_marketing_to_the_list():
    a = automation(
        "key: w\ntriggers: [{list_subscribed: newsletter}]\nnodes: [{id: m, type: send_email, template: w1}]\n"
    )
    trigger = {"list": "newsletter", "event": "list.subscribed"}
    out = advance(a, run_at("m", trigger=trigger), facts(), NOW, EV, RULES)
    assert out.effects[0].effect.config == {"trigger_list": "newsletter"}
    other = advance(a, run_at("m", trigger={"list": "newsletter"}), facts(), NOW, EV, RULES)
    assert other.effects[0].effect.config == {}  # not enrolled by a subscription


def test_a_long_chain_carries_on_next_tick():
    nodes = "\n".join(
        f"  - {{id: n{i}, type: add_tag, tag: t{i % 3}}}" for i in range(MAX_STEPS + 5)
    )
    a = automation(f"key: long\ntriggers: [{{event: go}}]\nnodes:\n{nodes}\n")
    out = advance(a, run_at("n0"), facts(), NOW, EV, RULES)
    assert out.steps == MAX_STEPS and out.wake_at == NOW and out.outcome is None
