"""The pure rules of reports: machine opens and clicks, attribution, revenue, rates, periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.errors import InvalidInput
from conveyor.domain.reports import (
    AttributionModel,
    StepFact,
    Touch,
    attribute,
    attribution_model,
    check_attribution,
    check_range,
    funnel_counts,
    graph_order,
    machine_click,
    machine_open,
    period_of,
    rates,
    revenue_minor,
)

SAFARI = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile"
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("ip", "agent", "seconds", "why"),
    [
        ("17.58.1.2", SAFARI, 3600, "proxy_apple"),
        ("66.249.1.1", "Mozilla/5.0 (via ggpht.com GoogleImageProxy)", 3600, "proxy_google"),
        ("203.0.113.9", "Barracuda Sentinel (EE)", 3600, "scanner_agent"),
        ("203.0.113.9", "", 3600, "no_user_agent"),
        ("40.94.30.1", SAFARI, 3600, "scanner_network"),
        ("203.0.113.9", SAFARI, 0.4, "too_fast"),
        ("203.0.113.9", SAFARI, 3600, None),
        ("203.0.113.9", SAFARI, None, None),  # sent time unknown: the agent decides
        ("not an ip", SAFARI, 60, None),
    ],
)
def test_machine_opens(ip, agent, seconds, why):
    assert machine_open(ip, agent, seconds) == why


def test_machine_clicks():
    assert machine_click("203.0.113.9", SAFARI, 5) == "too_fast"  # a scanner on delivery
    assert machine_click("203.0.113.9", SAFARI, 60) is None
    assert machine_click("203.0.113.9", "python-requests/2.31", 600) == "scanner_agent"
    assert machine_click("203.0.113.9", SAFARI, 600, hidden=True) == "hidden_link"
    # Apple's proxy fetches images only: a click from Apple's network is a person on iCloud Relay.
    assert machine_click("17.58.1.2", SAFARI, 600) is None


def touch(i, sent=None, opened=None, clicked=None):
    at = lambda hours: NOW - timedelta(hours=hours) if hours is not None else None  # noqa: E731
    return Touch(i, at(sent), at(opened), at(clicked))


def test_the_last_click_in_its_window_wins_over_any_open_or_receipt():
    model = AttributionModel()
    touches = [
        touch(1, sent=100, clicked=90),
        touch(2, sent=2, opened=1),
        touch(3, sent=50, clicked=48),
    ]
    assert attribute(touches, NOW, model) == 3
    assert (
        attribute([touch(1, sent=200, clicked=5 * 24 + 1), touch(2, sent=30)], NOW, model) is None
    )
    assert attribute([touch(1, sent=200, clicked=5 * 24 + 1), touch(2, sent=20)], NOW, model) == 2


def test_failing_a_click_the_last_open_or_receipt_within_a_day():
    model = AttributionModel()
    assert attribute([touch(1, sent=30, opened=4), touch(2, sent=3)], NOW, model) == 2
    assert attribute([touch(1, sent=30, opened=1), touch(2, sent=3)], NOW, model) == 1
    zero = AttributionModel(open_days=0)
    assert attribute([touch(1, sent=1, opened=1)], NOW, zero) is None


def test_touches_after_the_conversion_do_not_count():
    assert attribute([touch(1, sent=-1, clicked=-2)], NOW, AttributionModel()) is None


@given(st.lists(st.tuples(st.integers(0, 300), st.none() | st.integers(-10, 300),
                          st.none() | st.integers(-10, 300)), max_size=8))  # fmt: skip
def test_the_credited_message_is_one_the_contact_touched_in_a_window(raw):
    model = AttributionModel()
    touches = [touch(i, s, o, c) for i, (s, o, c) in enumerate(raw)]
    credited = attribute(touches, NOW, model)
    if credited is None:
        return
    t = touches[credited]
    times = [m for m in (t.sent_at, t.last_opened_at, t.last_clicked_at) if m is not None]
    assert any(NOW - timedelta(days=5) <= m <= NOW for m in times)


def test_revenue_is_read_in_minor_units_from_the_first_property_with_a_number():
    model = AttributionModel()
    assert revenue_minor({"revenue": 19.99}, model) == 1999
    assert revenue_minor({"revenue": "n/a", "total": "42.5"}, model) == 4250
    assert revenue_minor({"total": 0.1 + 0.2}, model) == 30
    assert revenue_minor({"revenue": True, "total": None}, model) == 0
    assert revenue_minor({"revenue": "NaN"}, model) == 0
    assert revenue_minor({"revenue": 10**20}, model) == 0  # a typo, not a fortune
    assert revenue_minor({"revenue": -5}, model) == -500  # a refund, when sent as one


def test_attribution_settings_are_checked_field_by_field():
    assert check_attribution({"click_days": 7, "event": " purchase "}) == {
        "click_days": 7,
        "event": "purchase",
    }
    for raw, field in [
        ({"click_days": 91}, "attribution.click_days"),
        ({"open_days": True}, "attribution.open_days"),
        ({"revenue_properties": []}, "attribution.revenue_properties"),
        ({"event": ""}, "attribution.event"),
        ({"window": 3}, "attribution.window"),
    ]:
        with pytest.raises(InvalidInput) as err:
            check_attribution(raw)
        assert err.value.field == field
    model = attribution_model({"attribution": {"click_days": 2}})
    assert (model.click_days, model.open_days, model.event) == (2, 1, "order_completed")
    assert model.as_dict()["name"] == (
        "last click within 2 days, else last human open or delivery within 1 day"
    )


def test_rates_leave_machines_out_unless_asked():
    figures = {"sent": 100, "bounced_hard": 2, "bounced_soft": 3, "opens_unique": 19,
               "opens_unique_any": 57, "clicks_unique": 5, "clicks_unique_any": 9,
               "conversions": 2, "revenue": 9500}  # fmt: skip
    people = rates(figures)
    assert people["open_rate"] == 0.2 and people["click_rate"] == round(5 / 95, 4)
    assert people["click_to_open_rate"] == round(5 / 19, 4)
    assert people["bounce_rate"] == 0.05 and people["revenue_per_recipient"] == 1.0
    everyone = rates(figures, machine=True)
    assert everyone["open_rate"] == 0.6
    assert rates({})["open_rate"] is None  # nothing sent: no rate, not 0 %


def test_periods_and_ranges():
    assert period_of(date(2026, 12, 3), "week") == date(2026, 11, 30)
    assert period_of(date(2026, 12, 3), "month") == date(2026, 12, 1)
    assert period_of(date(2026, 12, 3), "day") == date(2026, 12, 3)
    with pytest.raises(InvalidInput) as err:
        check_range(date(2026, 1, 2), date(2026, 1, 1), "day")
    assert err.value.field == "to"
    with pytest.raises(InvalidInput) as err:
        check_range(date(2026, 1, 1), date(2026, 1, 2), "hour")
    assert err.value.field == "granularity"


def test_graph_order_is_breadth_first_from_the_start():
    targets = {"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": [], "orphan": []}
    assert graph_order("a", targets) == ["a", "b", "c", "d", "orphan"]


# --- the funnel folded from the step log ---------------------------------------------------------


def _day(_workspace: int, at: datetime) -> str:
    return at.date().isoformat()


def _steps(plan: list[tuple[int, str, int]]) -> list[StepFact]:
    """(run, node, hours) -> steps in that order; node "goal" is a goal reached."""
    return [
        StepFact(
            i + 1,
            1,
            run,
            7,
            node,
            "goal_reached" if node == "goal" else "queued",
            NOW + timedelta(hours=hours),
        )  # fmt: skip
        for i, (run, node, hours) in enumerate(plan)
    ]


def test_a_run_reaches_a_node_once_and_converts_on_the_day_it_reached_it():
    steps = _steps([(1, "a", 0), (1, "b", 1), (1, "a", 30), (1, "goal", 60), (1, "goal", 70),
                    (2, "a", 0), (2, "goal", 1)])  # fmt: skip
    got = funnel_counts(steps, [], _day)
    assert got == {
        (1, 7, "2026-12-01", "a"): [2, 2],
        (1, 7, "2026-12-01", "b"): [1, 1],
        (1, 7, "2026-12-04", "goal"): [1, 1],  # its first goal step; the second adds nothing
        (1, 7, "2026-12-01", "goal"): [1, 1],
    }


@given(
    st.lists(
        st.tuples(st.integers(1, 4), st.sampled_from(["a", "b", "c", "goal"]), st.integers(0, 96)),
        max_size=40,
    ),
    st.lists(st.integers(0, 40), max_size=5),
)
def test_the_funnel_is_the_same_whatever_batches_the_steps_come_in(plan, cuts):
    plan.sort(key=lambda p: p[2])
    steps = _steps(plan)
    whole = funnel_counts(steps, [], _day)
    total: dict = {}
    edges = sorted({0, len(steps), *(c for c in cuts if c <= len(steps))})
    for a, b in zip(edges, edges[1:], strict=False):
        for key, (reached, converted) in funnel_counts(steps[a:b], steps[:a], _day).items():
            pair = total.setdefault(key, [0, 0])
            pair[0] += reached
            pair[1] += converted
    assert total == whole
    # and it is the plain definition: first step at a node, and a goal at or after it
    expected: dict = {}
    for run in {s.run_id for s in steps}:
        mine = [s for s in steps if s.run_id == run]
        for node in {s.node for s in mine}:
            first = next(s for s in mine if s.node == node)
            pair = expected.setdefault((1, 7, _day(1, first.at), node), [0, 0])
            pair[0] += 1
            pair[1] += any(s.outcome == "goal_reached" and s.id >= first.id for s in mine)
    assert whole == expected
