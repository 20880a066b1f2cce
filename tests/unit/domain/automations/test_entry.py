"""Entry rules, decided without a database: repeat, conditions, queues and priority groups."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.domain.automations import Priority
from conveyor.domain.automations.entry import RunRef, decide, releasable
from conveyor.domain.evaluation import Evaluator

from .conftest import NOW, automation, facts

EV = Evaluator()


def make(entry: str = "", priority: str = "", key: str = "t"):
    return automation(
        f"key: {key}\ntriggers: [{{event: go}}]\n{entry}\n{priority}\n"
        "nodes: [{id: w, type: wait, for: 1 day}]\n"
    )


def decide_for(a, *, inside=(), entries=(), snap=None, running=None):
    return decide(
        a, inside=list(inside), entries=list(entries), facts=snap or facts(), now=NOW,
        evaluator=EV, running=running,
    )  # fmt: skip


def test_a_first_entry_enters():
    assert decide_for(make()).summary == "entered"


def test_once_per_contact():
    d = decide_for(make("entry: {repeat: once}"), entries=[NOW - timedelta(days=400)])
    assert d.summary == "skipped: entered before (once per contact)"


def test_already_inside_says_since_when():
    a = make("entry: {repeat: every_time}")
    inside = [RunRef(1, "t", "active", NOW - timedelta(hours=2))]
    d = decide_for(a, inside=inside, entries=[NOW - timedelta(hours=2)])
    assert d.outcome == "skip" and d.reason == "already inside since 2026-03-02T08:00:00Z"
    assert d.blocking == inside[0]


def test_every_time_enters_again_once_the_last_run_is_over():
    a = make("entry: {repeat: every_time}")
    assert decide_for(a, entries=[NOW - timedelta(minutes=1)] * 5).outcome == "enter"


def test_after_a_while():
    a = make("entry: {repeat: after, after: 30 days}")
    assert decide_for(a, entries=[NOW - timedelta(days=29)]).reason == "entered too recently"
    assert decide_for(a, entries=[NOW - timedelta(days=31)]).outcome == "enter"


def test_daily_entry_limit():
    a = make("entry: {repeat: every_time, max_per_day: 2}")
    assert decide_for(a, entries=[NOW - timedelta(hours=1)]).outcome == "enter"
    two = [NOW - timedelta(hours=1), NOW - timedelta(hours=3)]
    assert decide_for(a, entries=two).reason == "daily entry limit"


def test_entry_condition_and_exclusion():
    a = make("entry: {if: {tag: customer}, unless: {tag: staff}}")
    assert decide_for(a).reason == "entry condition not met"
    assert decide_for(a, snap=facts(tags={"customer", "staff"})).reason == "excluded"
    assert decide_for(a, snap=facts(tags={"customer"})).outcome == "enter"


def test_queue_behind_another_automation():
    a = make("entry: {queue_behind: [onboarding]}")
    inside = [RunRef(1, "onboarding", "active", NOW)]
    d = decide_for(a, inside=inside)
    assert d.summary == "queued: behind onboarding" and d.note == {"because": "onboarding"}
    assert not releasable(a, 2, inside)
    assert releasable(a, 2, [])


GROUP = Priority("promotions", 0, "queue")


@pytest.mark.parametrize(
    ("on_conflict", "level", "summary"),
    [
        ("skip", 5, "skipped: inside spring (priority group promotions)"),
        ("queue", 5, "queued: inside spring (priority group promotions)"),
        ("preempt", 0, "queued: inside spring (priority group promotions)"),  # does not outrank
        ("preempt", 5, "entered"),
    ],
)
def test_priority_groups(on_conflict, level, summary):
    a = make(
        priority=f"priority: {{group: promotions, level: {level}, on_conflict: {on_conflict}}}"
    )
    spring = RunRef(1, "spring", "active", NOW, GROUP)
    d = decide_for(a, inside=[spring])
    assert d.summary == summary
    if summary == "entered":
        assert d.preempt == (spring,) and d.note == {"preempted": ["spring"], "group": "promotions"}
    else:
        assert d.note == {"because": "spring", "group": "promotions"}


def test_a_run_is_not_preempted_by_the_automation_it_starts():
    a = make(priority="priority: {group: promotions, level: 9, on_conflict: preempt}")
    spring = RunRef(1, "spring", "active", NOW, GROUP)
    assert decide_for(a, inside=[spring], running=1).outcome == "queue"


def test_a_queued_group_entry_waits_for_the_active_one():
    a = make(priority="priority: {group: promotions}")
    holder = RunRef(1, "spring", "active", NOW, GROUP)
    assert not releasable(a, 2, [holder])
    assert releasable(a, 2, [RunRef(1, "spring", "queued", NOW, GROUP)])
