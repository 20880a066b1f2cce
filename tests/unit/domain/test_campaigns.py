"""The pure rules of campaigns: definitions checked field by field, the lifecycle's moves,
when a schedule starts, each timezone's instant for a local-time send (DST, late zones), and
throttle slots."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from conveyor.domain.campaigns import (
    AbTest,
    Schedule,
    ab_winner,
    check_move,
    local_plan,
    parse_ab_test,
    parse_campaign,
    parse_schedule,
    sample_slot,
    starts_at,
    throttle_slots,
)
from conveyor.domain.errors import InvalidInput
from conveyor.domain.experiments import ArmCounts

BASE = {"key": "news", "template": "news", "audience": {"lists": ["newsletter"]}}


def test_a_minimal_definition_takes_defaults():
    spec = parse_campaign(BASE)
    assert (spec.name, spec.channel, spec.on_cap, spec.schedule) == ("news", "email", "skip", None)
    assert spec.audience.as_dict() == {"lists": ["newsletter"]}


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidInput) as caught:
        parse_campaign({"key": "Bad Key", "channel": "fax", "template": "",
                        "audience": {"lists": [1]}, "throttle": {"per_hour": -1}, "extra": 1})
    fields = {e.field for e in caught.value.errors}
    assert fields == {"extra", "key", "channel", "template", "audience.lists", "throttle.per_hour"}


@pytest.mark.parametrize(("raw", "field"), [
    ({"at": "2026-03-03T09:00:00"}, "schedule.at"),  # no offset: ambiguous
    ({"at": "tomorrow"}, "schedule.at"),
    ({"date": "2026-03-03"}, "schedule.local_time"),
    ({"local_time": "09:00"}, "schedule.date"),
    ({"date": "2026-03-03", "local_time": "25:00"}, "schedule.local_time"),
    ({"date": "2026-03-03", "local_time": "09:00", "late": "never"}, "schedule.late"),
    ({"at": "2026-03-03T09:00:00Z", "date": "2026-03-03"}, "schedule"),
    ({"when": "now"}, "schedule.when"),
])
def test_bad_schedules(raw, field):
    with pytest.raises(InvalidInput) as caught:
        parse_schedule(raw)
    assert caught.value.field == field


def test_a_local_time_cannot_be_throttled():
    with pytest.raises(InvalidInput) as caught:
        parse_campaign({**BASE, "throttle": {"per_hour": 10},
                        "schedule": {"date": "2026-03-03", "local_time": "09:00"}})
    assert caught.value.field == "throttle"


def test_moves_follow_the_lifecycle():
    assert check_move("draft", "schedule") is None
    assert check_move("sending", "pause") is None
    assert check_move("paused", "resume") is None
    assert check_move("sent", "cancel") == (
        "the campaign is sent; cancel needs it draft or scheduled or sending or paused")
    assert check_move("scheduled", "edit") is not None


def test_a_local_time_starts_when_utc_plus_14_reaches_it():
    schedule = Schedule(date=date(2026, 3, 3), local_time=time(9, 0))
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert starts_at(schedule, now) == datetime(2026, 3, 2, 19, 0, tzinfo=UTC)
    late = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    assert starts_at(schedule, late) == late  # never in the past
    assert starts_at(Schedule(at=datetime(2026, 1, 1, tzinfo=UTC)), now) == now


def test_each_zone_gets_its_own_nine_oclock_across_dst():
    # 29 March 2026: Europe moves to summer time; New York already did on the 8th.
    schedule = Schedule(date=date(2026, 3, 29), local_time=time(9, 0))
    now = datetime(2026, 3, 28, 19, 0, tzinfo=UTC)
    plan = local_plan(schedule, ["Europe/Warsaw", "America/New_York", "Asia/Tokyo", None,
                                 "Mars/Olympus"], "Europe/London", now)
    assert plan.by_zone == {
        "Europe/Warsaw": datetime(2026, 3, 29, 7, 0, tzinfo=UTC),  # CEST, UTC+2
        "America/New_York": datetime(2026, 3, 29, 13, 0, tzinfo=UTC),  # EDT
        "Asia/Tokyo": datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
        "Mars/Olympus": datetime(2026, 3, 29, 8, 0, tzinfo=UTC),  # unknown: the workspace's
    }
    assert plan.fallback == datetime(2026, 3, 29, 8, 0, tzinfo=UTC)  # London, BST
    assert plan.late == []


def test_late_zones_get_it_the_next_day_or_now():
    schedule = Schedule(date=date(2026, 3, 3), local_time=time(9, 0))
    now = datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
    plan = local_plan(schedule, ["Asia/Tokyo", "America/New_York"], "UTC", now)
    assert plan.by_zone["Asia/Tokyo"] == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)
    assert plan.by_zone["America/New_York"] == datetime(2026, 3, 3, 14, 0, tzinfo=UTC)
    assert plan.late == ["Asia/Tokyo", "UTC"]
    eager = Schedule(date=date(2026, 3, 3), local_time=time(9, 0), late="now")
    assert local_plan(eager, ["Asia/Tokyo"], "UTC", now).by_zone["Asia/Tokyo"] == now


def test_throttle_slots_are_an_hour_apart_and_cover_everyone():
    start = datetime(2026, 4, 1, 10, 0, tzinfo=UTC)
    assert throttle_slots(5, 2, start) == [
        (1, 2, start), (3, 4, start.replace(hour=11)), (5, 5, start.replace(hour=12))]
    assert throttle_slots(0, 2, start) == []


def test_an_ab_test_names_its_variants_and_takes_the_first_as_template():
    spec = parse_campaign({**{k: v for k, v in BASE.items() if k != "template"},
                           "ab_test": {"variants": ["a", "b"], "sample": 20, "wait": "2 hours"}})
    assert spec.template == "a" and spec.ab_test is not None
    assert spec.ab_test.as_dict() == {"variants": ["a", "b"], "sample": 20, "wait": 7200,
                                      "metric": "clicked"}
    assert parse_ab_test(spec.ab_test.as_dict()) == spec.ab_test  # stored form parses back


@pytest.mark.parametrize(("raw", "field"), [
    ({"variants": ["a"]}, "ab_test.variants"),
    ({"variants": ["a", "a"]}, "ab_test.variants"),
    ({"variants": ["a", "b"], "sample": 80}, "ab_test.sample"),
    ({"variants": ["a", "b"], "wait": "1 minute"}, "ab_test.wait"),
    ({"variants": ["a", "b"], "metric": "opened"}, "ab_test.metric"),
    ({"variants": ["a", "b"], "event": "order_completed"}, "ab_test.event"),
    ({"variants": ["a", "b"], "winner": "a"}, "ab_test.winner"),
])
def test_bad_ab_tests(raw, field):
    with pytest.raises(InvalidInput) as caught:
        parse_campaign({**BASE, "template": "a", "ab_test": raw})
    assert caught.value.field == field


def test_the_sample_is_an_even_systematic_share_of_every_hundred():
    slots = [sample_slot(seq) for seq in range(1, 101)]
    assert sorted(slots) == list(range(100))
    in_sample = [s for s in slots if s < 20]
    assert len(in_sample) == 20 and sum(s % 2 == 0 for s in in_sample) == 10


def test_the_winner_is_the_split_test_decision_else_the_best_said_so():
    test = AbTest(("a", "b"), 20, 4 * 3600)
    start = datetime(2026, 5, 5, 9, tzinfo=UTC)
    end = start.replace(hour=13)
    clear = ab_winner(test, [ArmCounts("a", 200, 4), ArmCounts("b", 200, 40)], start, end)
    assert clear.winner == "b" and clear.decision["rule"] == "significant"
    close = ab_winner(test, [ArmCounts("a", 20, 2), ArmCounts("b", 20, 3)], start, end)
    assert close.winner == "b" and close.decision["rule"] == "best at max duration"
    assert "no significant winner" in close.note
    # More unsubscribes, significantly: b cannot win even with more clicks.
    guarded = ab_winner(test, [ArmCounts("a", 400, 10), ArmCounts("b", 400, 14, unsubscribed=60)],
                        start, end)
    assert guarded.winner == "a"
