"""The scoring model's rules and decay math: pure, handed `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.conditions import Parser
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import define_field
from conveyor.domain.scoring import (
    Cap,
    Decay,
    Scorer,
    ScoreState,
    capped,
    crossed,
    decays_of,
    next_crossing,
    parse_model,
    thresholds,
)

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
PARSER = Parser({"country": define_field("country", "text")}, {"newsletter"})
MODEL = {
    "scores": {
        "engagement": {
            "decay": {"half_life": "30 days"},
            "rules": [
                {"id": "click", "event": "email.clicked", "points": 5,
                 "cap": {"points": 20, "per": "30 days"}},
                {"id": "pricing", "page_visited": "*/pricing*", "points": 10},
                {"id": "big-order", "event": "order_completed",
                 "where": [{"property": "total", "op": "gte", "value": 1000}], "points": 25},
            ],
        },
        "fit": {"rules": [{"id": "de", "when": {"field": "country", "op": "eq", "value": "DE"},
                           "points": 15}]},
    }
}


def scorer(now=T0, watched=None, emit=True):
    return Scorer(parse_model(MODEL, PARSER), T0 - 10 * DAY, watched or {}, now, emit=emit)


def test_a_point_halves_every_half_life_whatever_the_epoch():
    for epoch in (T0 - 100 * DAY, T0, T0 + 50 * DAY):
        state = ScoreState(decay=Decay(30 * 86400, epoch))
        state.add(60, T0)
        assert state.value(T0) == pytest.approx(60)
        assert state.value(T0 + 30 * DAY) == pytest.approx(30)
        assert state.value(T0 + 60 * DAY) == pytest.approx(15)


def test_points_decay_from_when_they_were_earned_and_fixed_points_do_not():
    state = ScoreState(fixed=15, decay=Decay(30 * 86400, T0))
    state.add(10, T0)
    state.add(10, T0 + 30 * DAY)
    assert state.value(T0 + 30 * DAY) == pytest.approx(15 + 5 + 10)
    assert ScoreState(norm=7, fixed=3).value(T0 + 9999 * DAY) == 10  # no decay


def test_percent_per_period_is_a_half_life():
    [decay] = decays_of({"scores": {"e": {"decay": {"percent": 50, "per": "30 days"}}}},
                        T0).values()
    assert decay is not None and decay.half_life == pytest.approx(30 * 86400)
    [decay] = decays_of({"scores": {"e": {"decay": {"percent": 10, "per": "30 days"}}}},
                        T0).values()
    state = ScoreState(decay=decay)
    state.add(100, T0)
    assert state.value(T0 + 30 * DAY) == pytest.approx(90)


def test_rules_match_events_and_their_filters_and_caps_cut_points_in_the_window():
    now = T0 + timedelta(hours=12)
    s = scorer(now)
    for i in range(6):
        s.on_event(1, i, "email.clicked", {}, now - timedelta(hours=i))
    s.on_event(1, 10, "page", {"url": "https://x.example/pricing?p=1"}, now)
    s.on_event(1, 11, "page", {"url": "https://x.example/about"}, now)
    s.on_event(1, 12, "order_completed", {"total": 999}, now)
    s.on_event(1, 13, "order_completed", {"total": 1000}, now)
    [(cid, name, state, checked, cross)] = s.rows()
    assert (cid, name) == (1, "engagement")
    assert state.value(now) == 20 + 10 + 25  # earned the same day: no decay between them yet
    assert state.value(now + timedelta(hours=11)) == 55  # the day is not over
    assert state.value(now + timedelta(hours=12)) == pytest.approx(55 * 2 ** (-1 / 30))
    assert [a.rule for a in s.awards] == ["click"] * 4 + ["pricing", "big-order"]
    assert cross is None  # nothing watched


def test_a_cap_counts_earlier_awards_and_frees_up_after_its_window():
    assert capped(5, Cap(20, 30 * 86400), 18) == 2
    assert capped(5, Cap(20, 30 * 86400), 25) == 0
    assert capped(-5, Cap(20, 30 * 86400), 25) == -5  # a cap limits gains, not penalties
    s = scorer(now=T0 + 31 * DAY)
    s.earned_before(1, "engagement", "click", T0, 20)
    s.on_event(1, 1, "email.clicked", {}, T0 + DAY)  # inside the window of the first 20
    s.on_event(1, 2, "email.clicked", {}, T0 + 31 * DAY)  # the first 20 are out of it
    assert [a.points for a in s.awards] == [5]


def test_each_award_is_a_change_and_only_crossings_of_decay_are_recorded():
    s = scorer(watched={"engagement": {50}})
    s.load(1, "engagement", 48 / Decay(30 * 86400, T0 - 10 * DAY).factor(T0), 0, T0)
    s.on_event(1, 1, "page", {"url": "/pricing"}, T0)
    [change] = s.changes
    assert (change.old, change.new) == (pytest.approx(48), pytest.approx(58))
    assert crossed(change.old, change.new, {50}) == [(50, "up")]
    [(_, _, state, _, cross)] = s.rows()
    # 58 → 50 takes 30 * log2(58 / 50) days ≈ 6.42 days: below 50 from the 7th day's start
    assert cross == T0 + 7 * DAY
    assert state.value(cross) < 50 <= state.value(cross - timedelta(seconds=1))

    later = Scorer(s.model, T0 - 10 * DAY, {"engagement": {50}}, cross)
    later.load(1, "engagement", state.norm, state.fixed, T0)
    later.settle(1, "engagement")
    [down] = later.changes
    assert down.old >= 50 > down.new and down.because == {"reason": "decay"}
    [(_, _, _, checked, again)] = later.rows()
    assert checked == cross and again is None  # nothing left to cross on the way to 0
    quiet = Scorer(s.model, T0 - 10 * DAY, {"engagement": {50}}, cross - timedelta(seconds=2))
    quiet.load(1, "engagement", state.norm, state.fixed, T0)
    quiet.settle(1, "engagement")
    assert quiet.changes == []  # a second before: not crossed yet


def test_next_crossing_goes_towards_fixed_points_both_ways():
    decay = Decay(86400, T0)
    falling = ScoreState(norm=80, fixed=10, decay=decay)  # 90 now, falls towards 10
    when = next_crossing(falling, {50, 5, 100}, T0)  # 50 exactly after a day: below it after 2
    assert when == T0 + 2 * DAY
    assert falling.value(when) < 50 <= falling.value(when - timedelta(seconds=1))
    rising = ScoreState(norm=-40, fixed=0, decay=decay)  # -40 now, rises towards 0
    when = next_crossing(rising, {-10, 0, 10}, T0)
    assert when is not None and rising.value(when) >= -10 > rising.value(when - timedelta(seconds=1))
    assert next_crossing(ScoreState(norm=5, fixed=0), {1}, T0) is None  # no decay, no crossing


def test_field_rules_are_fixed_points_recorded_as_changes():
    s = scorer()
    s.set_fixed(1, "fit", 15)
    s.set_fixed(2, "fit", 0)  # no row to make for nothing
    [change] = s.changes
    assert (change.contact_id, change.old, change.new) == (1, 0, 15)
    assert [(cid, name) for cid, name, *_ in s.rows()] == [(1, "fit")]


def test_a_recompute_records_no_changes_and_adjustments_need_a_known_score():
    s = scorer(emit=False)
    s.adjust(1, "engagement", 7, T0, 99)
    s.adjust(1, "nope", 7, T0, 100)
    assert s.changes == [] and [a.rule for a in s.awards] == ["adjust_score"]


def test_points_from_the_future_count_from_now():
    s = scorer()
    s.on_event(1, 1, "page", {"url": "/pricing"}, T0 + 400 * DAY)
    assert s.awards[0].at == T0
    assert s.rows()[0][2].value(T0) == pytest.approx(10)


def test_thresholds_come_from_score_crossed_triggers_by_score():
    found = thresholds([
        {"triggers": [{"score_crossed": {"score": "engagement", "threshold": 50}},
                      {"score_crossed": {"threshold": 10, "direction": "down"}},
                      {"event": "x"}, "junk"]},
        None,
        {"triggers": [{"score_crossed": {"score": "engagement", "threshold": 80.5}}]},
    ])
    assert found == {"engagement": {50.0, 80.5}, "score": {10.0}}


@pytest.mark.parametrize(("model", "field"), [
    ({"scores": {"Bad Name": {}}}, "scores.Bad Name"),
    ({"scores": {"score": {}}}, "scores.score"),
    ({"scores": {"e": {"decay": {"half_life": "-30 days"}}}}, "scores.e.decay.half_life"),
    ({"scores": {"e": {"decay": {"half_life": -3}}}}, "scores.e.decay.half_life"),
    ({"scores": {"e": {"decay": {"half_life": "10 minutes"}}}}, "scores.e.decay.half_life"),
    ({"scores": {"e": {"decay": {"percent": 0, "per": "1 day"}}}}, "scores.e.decay.percent"),
    ({"scores": {"e": {"decay": {"percent": 5}}}}, "scores.e.decay"),
    ({"scores": {"e": {"rules": [{"event": "x", "points": 1, "cap": {"points": 5}}]}}},
     "scores.e.rules.0.cap"),
    ({"scores": {"e": {"rules": [{"event": "x", "points": 1, "cap": {"points": 0, "per": "1 day"}}]}}},
     "scores.e.rules.0.cap.points"),
    ({"scores": {"e": {"rules": [{"event": "x", "points": 1, "cap": {"points": 5, "per": 0}}]}}},
     "scores.e.rules.0.cap.per"),
    ({"scores": {"e": {"rules": [{"event": "x", "where": [{"property": "a", "op": "regex",
                                                            "value": "."}], "points": 1}]}}},
     "scores.e.rules.0.where.0.op"),
    ({"scores": {"e": {"rules": [{"points": 1}]}}}, "scores.e.rules.0"),
    ({"scores": {"e": {"rules": [{"event": "x", "points": float("inf")}]}}},
     "scores.e.rules.0.points"),
    ({"scores": {"e": {"rules": [{"id": "a", "event": "x", "points": 1},
                                 {"id": "a", "event": "y", "points": 1}]}}},
     "scores.e.rules.1.id"),
    ({"scores": {"e": {"rules": [{"score_crossed": {"threshold": 3}, "points": 1}]}}},
     "scores.e.rules.0"),
    ({"scores": {"e": {"rules": [{"when": {"field": "country"}, "points": 1, "cap": 1}]}}},
     "scores.e.rules.0.cap"),
])
def test_a_bad_model_names_the_field(model, field):
    with pytest.raises(InvalidInput) as caught:
        parse_model(model, PARSER)
    assert caught.value.field == field


def test_score_conditions_are_checked_against_the_model_and_decided_with_decay():
    from conveyor.domain.conditions import FieldIs, ScoreIs
    from conveyor.domain.evaluation import Evaluator, Snapshot

    parser = Parser({}, set(), scores={"engagement"})
    assert parser.parse({"score": "engagement", "op": "gte", "value": 50}) == ScoreIs(
        "engagement", "gte", 50.0)
    assert isinstance(parser.parse({"score": "score", "op": "gt", "value": 1}), FieldIs)
    for raw, field in (
        ({"score": "nope", "value": 1}, "score"),
        ({"score": "engagement", "op": "contains", "value": 1}, "op"),
        ({"score": "engagement", "op": "between", "value": [5, 1]}, "value"),
        ({"score": "engagement", "value": "high"}, "value"),
    ):
        with pytest.raises(InvalidInput) as caught:
            parser.parse(raw)
        assert caught.value.field == field
    snap = Snapshot({}, 0, {}, T0, T0, set(), {})
    snap.scores["engagement"] = ScoreState(norm=60, decay=Decay(30 * 86400, T0))
    hot = parser.parse({"score": "engagement", "op": "gte", "value": 50})
    assert Evaluator().evaluate(hot, snap, T0).ok
    verdict = Evaluator().evaluate(hot, snap, T0 + 30 * DAY)
    assert not verdict.ok and verdict.why == "score engagement gte 50.0: is 30.00"


def test_score_crossed_names_its_score_and_the_default_is_the_contacts_own():
    from conveyor.domain.automations.parse import trigger_preset
    from conveyor.domain.automations.triggers import matches

    named = trigger_preset({"score_crossed": {"score": "engagement", "threshold": 50}}, "t",
                           PARSER)
    own = trigger_preset({"score_crossed": {"threshold": 50, "direction": "down"}}, "t", PARSER)
    up = {"score": "engagement", "old": 49.9, "new": 50}
    assert matches(named, "score.changed", up)
    assert not matches(named, "score.changed", {**up, "score": "fit"})
    assert not matches(own, "score.changed", {"score": "engagement", "old": 55, "new": 45})
    assert matches(own, "score.changed", {"score": "score", "old": 55, "new": 45})


def test_values_are_exact_to_six_decimals_and_the_epoch_moves_before_weights_grow_large():
    from conveyor.domain.scoring import epoch_of, exact, needs_rebase

    assert exact(49.99999999999999) == 50.0 and exact(-0.0000004) == 0.0
    assert exact(2.0000014) == 2.000001 and exact(-2.0000014) == -2.000001
    assert epoch_of(datetime(2026, 3, 1, 17, 5, tzinfo=UTC)) == datetime(2026, 3, 1, tzinfo=UTC)
    decay = Decay(86400, T0)
    assert needs_rebase(decay, T0 + 399 * DAY) == 0
    assert needs_rebase(decay, T0 + 401 * DAY) == 401
    assert needs_rebase(None, T0 + 9999 * DAY) == 0
    state = ScoreState(decay=decay)
    state.add(40, T0 + 300 * DAY)
    moved = ScoreState(state.norm * 2.0 ** -401, 0, Decay(86400, T0 + 401 * DAY))
    assert moved.value(T0 + 402 * DAY) == pytest.approx(state.value(T0 + 402 * DAY), abs=1e-6)
