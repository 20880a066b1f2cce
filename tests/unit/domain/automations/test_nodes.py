"""Every node type in the registry, one at a time: what it does, what it waits for, what it says."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.domain.automations import REGISTRY, ContactChange, EndOther, Enroll, Send
from conveyor.domain.automations.nodes import RunView, execute
from conveyor.domain.automations.nodes.actions import apply_change, render_value
from conveyor.domain.automations.nodes.flow import split_point
from conveyor.domain.errors import InvalidInput
from conveyor.domain.evaluation import Evaluator

from .conftest import NOW, RULES, automation, facts

EV = Evaluator()


def one(node_yaml: str, extra: str = "  - {id: after, type: end}\n"):
    """The first node of a two-node automation, and the automation."""
    a = automation("key: t\ntriggers: [{event: go}]\nnodes:\n" + node_yaml + extra)
    return a.nodes[a.start], a


def view(node, state=None, trigger=None, contact_id=42, list_=None):
    return RunView(7, "t", contact_id, node.id, state or {}, NOW, trigger or {}, list_)


def test_the_registry_covers_every_node_type_once():
    assert set(REGISTRY) == {
        "wait", "wait_until", "if", "split", "goal", "end", "start_automation",
        "exit_automation", "add_tag", "remove_tag", "set_field", "clear_field",
        "increment_field", "subscribe", "unsubscribe", "adjust_score", "send_email",
        "send_sms", "send_site_message", "notify_team", "webhook", "create_deal",
        "update_deal", "assign_owner", "create_task", "add_note",
    }  # fmt: skip
    for name, kind in REGISTRY.items():
        assert kind.name == name and kind.category in ("flow", "action", "send")


def test_wait_waits_then_passes():
    node, _ = one("  - {id: w, type: wait, for: 2 days}\n")
    first = execute(node, view(node), facts(), NOW, EV)
    assert (first.kind, first.until) == ("wait", NOW + timedelta(days=2))
    again = execute(node, view(node, first.state), facts(), NOW + timedelta(days=2), EV)
    assert (again.kind, again.outcome, again.next) == ("next", "waited", "after")
    assert again.reason == "waited 2 days"


def test_wait_until_a_condition_or_its_timeout():
    node, _ = one(
        "  - {id: w, type: wait_until, condition: {tag: paid}, timeout: 1 hour, on_timeout: late}\n"
        "  - {id: after, type: end}\n  - {id: late, type: end}\n",
        "",
    )
    waiting = execute(node, view(node), facts(), NOW, EV)
    assert waiting.kind == "wait" and waiting.until == NOW + timedelta(hours=1)
    met = execute(node, view(node, waiting.state), facts(tags={"paid"}), NOW, EV)
    assert (met.outcome, met.next) == ("met", "after")
    late = execute(node, view(node, waiting.state), facts(), NOW + timedelta(hours=1), EV)
    assert (late.outcome, late.next) == ("timeout", "late")


def test_wait_until_nine_in_the_contacts_timezone():
    node, _ = one("  - {id: w, type: wait_until, at: '09:00'}\n")
    # 10:00 UTC is 11:00 in Warsaw: the next 09:00 there is tomorrow 08:00 UTC.
    result = execute(node, view(node), facts(timezone="Europe/Warsaw"), NOW, EV)
    assert result.until == NOW.replace(day=3, hour=8)


def test_wait_until_a_date_field_with_an_offset_and_a_missing_field():
    node, _ = one("  - {id: w, type: wait_until, field: renews_on, offset: -1 day}\n")
    result = execute(node, view(node), facts(fields={"renews_on": "2026-03-10"}), NOW, EV)
    assert result.until == NOW.replace(day=9, hour=0)
    missing = execute(node, view(node), facts(), NOW, EV)
    assert (missing.kind, missing.outcome) == ("next", "skipped")


@pytest.mark.parametrize(
    ("tags", "outcome", "target"), [({"vip"}, "then", "a"), (set(), "else", None)]
)
def test_if_branches(tags, outcome, target):
    node, _ = one(
        "  - {id: c, type: if, condition: {tag: vip}, then: a, else: end}\n  - {id: a, type: end}\n",
        "",
    )
    result = execute(node, view(node), facts(tags=tags), NOW, EV)
    assert (result.outcome, result.next) == (outcome, target)
    assert result.reason["ok"] is (outcome == "then")


def test_split_is_stable_per_contact_and_follows_the_weights():
    node, _ = one(
        "  - {id: s, type: split, paths: [{name: A, weight: 1, next: a}, {name: B, weight: 3, next: b}]}\n"
        "  - {id: a, type: end}\n  - {id: b, type: end}\n",
        "",
    )
    picks = [execute(node, view(node, contact_id=c), facts(), NOW, EV).outcome for c in range(400)]
    assert picks == [
        execute(node, view(node, contact_id=c), facts(), NOW, EV).outcome for c in range(400)
    ]
    assert 60 < picks.count("A") < 140  # 25 % of 400, give or take
    assert 0 <= split_point("t", 1) < 1


SPLIT_TEST = (
    "  - {id: s, type: split, test: {min_sample: 100},"
    " paths: [{name: A, weight: 1, next: a}, {name: B, weight: 1, next: b}]}\n"
    "  - {id: a, type: end}\n  - {id: b, type: end}\n"
)


def test_a_decided_split_test_sends_everyone_to_its_winner():
    node, _ = one(SPLIT_TEST, "")
    before = {execute(node, view(node, contact_id=c), facts(), NOW, EV).outcome for c in range(50)}
    assert before == {"A", "B"}
    for c in range(50):
        decided = RunView(7, "t", c, node.id, {}, NOW, {}, None, {"s": "B"})
        result = execute(node, decided, facts(), NOW, EV)
        assert (result.outcome, result.next) == ("B", "b")
        assert result.reason == "B (the winner of this split test)"
    # a winner that is no longer one of the paths is ignored
    stale = RunView(7, "t", 1, node.id, {}, NOW, {}, None, {"s": "C"})
    assert execute(node, stale, facts(), NOW, EV).outcome in ("A", "B")


@pytest.mark.parametrize(
    ("node_yaml", "field"),
    [
        (SPLIT_TEST.replace("min_sample: 100", "metric: opened"), "nodes.0.test.metric"),
        (SPLIT_TEST.replace("min_sample: 100", "metric: condition"), "nodes.0.test.metric"),
        (SPLIT_TEST.replace("test: {min_sample: 100},", "condition: {tag: vip},"),
         "nodes.0.condition"),
        (SPLIT_TEST.replace("name: B", "name: A"), "nodes.0.paths"),
        (SPLIT_TEST.replace("min_sample: 100", "confidence: 0.5"), "nodes.0.test.confidence"),
    ],
)
def test_a_bad_split_test_names_its_field(node_yaml, field):
    with pytest.raises(InvalidInput) as caught:
        one(node_yaml, "")
    assert caught.value.field == field


def test_a_condition_metric_takes_the_nodes_condition():
    node, _ = one(SPLIT_TEST.replace("min_sample: 100", "metric: condition").replace(
        "test:", "condition: {tag: vip}, test:"), "")
    assert node.condition is not None and node.config["test"]["metric"] == "condition"


def test_goal_reached_skipped_waiting_and_ended():
    node, _ = one(
        "  - {id: g, type: goal, condition: {tag: bought}, otherwise: wait, timeout: 1 day}\n"
    )
    assert execute(node, view(node), facts(tags={"bought"}), NOW, EV).outcome == "goal_reached"
    waiting = execute(node, view(node), facts(), NOW, EV)
    assert (waiting.kind, waiting.outcome) == ("wait", "waiting_for_goal")
    late = execute(node, view(node, waiting.state), facts(), NOW + timedelta(days=1), EV)
    assert (late.kind, late.outcome) == ("end", "goal_skipped")
    passing, _ = one("  - {id: g, type: goal, condition: {tag: bought}}\n")
    assert execute(passing, view(passing), facts(), NOW, EV).outcome == "goal_skipped"


def test_end_start_and_exit_other_automations():
    end, _ = one("  - {id: e, type: end}\n", "")
    assert execute(end, view(end), facts(), NOW, EV).kind == "end"
    start, _ = one("  - {id: s, type: start_automation, automation: other}\n")
    assert execute(start, view(start), facts(), NOW, EV).effects == (Enroll("other"),)
    stop, _ = one("  - {id: s, type: exit_automation, automation: other}\n")
    assert execute(stop, view(stop), facts(), NOW, EV).effects == (EndOther("other"),)


@pytest.mark.parametrize(
    ("node", "change"),
    [
        ("{id: n, type: add_tag, tag: vip}", ContactChange("add_tag", "vip")),
        ("{id: n, type: remove_tag, tag: vip}", ContactChange("remove_tag", "vip")),
        (
            "{id: n, type: set_field, field: plan, value: '{{ event.plan }}'}",
            ContactChange("set_field", "plan", "pro"),
        ),
        ("{id: n, type: clear_field, field: plan}", ContactChange("clear_field", "plan")),
        (
            "{id: n, type: increment_field, field: visits, by: 2}",
            ContactChange("increment_field", "visits", 2),
        ),
        ("{id: n, type: subscribe, list: newsletter}", ContactChange("subscribe", "newsletter")),
        (
            "{id: n, type: unsubscribe, list: newsletter}",
            ContactChange("unsubscribe", "newsletter"),
        ),
        ("{id: n, type: adjust_score, by: 10}", ContactChange("adjust_score", None, 10)),
        (
            "{id: n, type: adjust_score, score: engagement, by: 7}",
            ContactChange("adjust_score", "engagement", 7),
        ),
        ("{id: n, type: adjust_score, score: score, by: 2}", ContactChange("adjust_score", None, 2)),
    ],
)
def test_actions_become_contact_changes(node, change):
    parsed, _ = one(f"  - {node}\n")
    result = execute(parsed, view(parsed, trigger={"plan": "pro"}), facts(), NOW, EV)
    assert (result.outcome, result.next, result.effects) == ("done", "after", (change,))


def test_applying_changes_to_the_facts():
    snap = facts(tags={"old"}, fields={"visits": 2}, lists={"vip": "unsubscribed"}, score=45)
    for change in (
        ContactChange("add_tag", "vip"),
        ContactChange("remove_tag", "old"),
        ContactChange("increment_field", "visits", 3),
        ContactChange("set_field", "plan", "pro"),
        ContactChange("subscribe", "newsletter"),
        ContactChange("subscribe", "vip"),  # double opt-in: asked to confirm first
        ContactChange("adjust_score", None, 10),
        ContactChange("adjust_score", "engagement", 99),  # the scoring consumer's to apply
        ContactChange("set_field", "phone", "+48 601 234 567"),
    ):
        apply_change(change, snap, RULES)
    assert snap.tags == {"vip"}
    assert snap.fields == {"visits": 5, "plan": "pro"}
    assert snap.lists == {"newsletter": "subscribed", "vip": "unconfirmed"}
    assert snap.score == 55 and snap.standard["phone"] == "+48601234567"
    apply_change(ContactChange("clear_field", "plan"), snap, RULES)
    assert "plan" not in snap.fields


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (ContactChange("set_field", "nope", 1), "nope"),
        (ContactChange("set_field", "visits", "many"), "visits"),
        (ContactChange("subscribe", "nope"), "nope"),
        (ContactChange("adjust_score", None, 2**31), "score"),
    ],
)
def test_changes_that_cannot_apply_say_why(change, field):
    with pytest.raises(InvalidInput) as caught:
        apply_change(change, facts(), RULES)
    assert caught.value.field == field


def test_render_value_takes_typed_trigger_properties():
    assert render_value("{{ event.total }}", {"total": 12.5}) == 12.5
    assert render_value("order {{ event.id }}!", {"id": 7}) == "order 7!"
    assert render_value("{{ event.missing }}", {}) is None


@pytest.mark.parametrize(
    ("kind", "channel", "klass"),
    [
        ("send_email", "email", "marketing"),
        ("send_sms", "sms", "marketing"),
        ("send_site_message", "site_message", "marketing"),
        ("notify_team", "team", "transactional"),
        ("webhook", "webhook", "transactional"),
    ],
)
def test_sends_queue_an_outbox_message(kind, channel, klass):
    extra = {
        "notify_team": ", to: [sales@example.com]",
        "webhook": ", url: 'https://crm.example/in'",
    }
    node, _ = one(f"  - {{id: n, type: {kind}, template: t1{extra.get(kind, '')}}}\n")
    result = execute(node, view(node), facts(), NOW, EV)
    assert result.outcome == "queued"
    (send,) = result.effects
    assert isinstance(send, Send) and (send.channel, send.message_class) == (channel, klass)


def test_marketing_from_a_list_subscription_is_sent_for_that_list():
    node, _ = one("  - {id: n, type: send_email, template: welcome-2}\n")
    result = execute(node, view(node, list_="newsletter"), facts(), NOW, EV)
    assert result.effects[0].config["trigger_list"] == "newsletter"  # delivery checks it then
    # A node's own list wins; transactional mail is not sent for a list.
    own, _ = one("  - {id: n, type: send_sms, template: promo, list: vip}\n")
    assert (
        execute(own, view(own, list_="newsletter"), facts(), NOW, EV).effects[0].config["list"]
        == "vip"
    )
    receipt, _ = one("  - {id: n, type: send_email, template: receipt, class: transactional}\n")
    assert (
        "list"
        not in execute(receipt, view(receipt, list_="newsletter"), facts(), NOW, EV)
        .effects[0]
        .config
    )
