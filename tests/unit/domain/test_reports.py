"""The pure rules of reports: machine opens and clicks, attribution, revenue, rates, periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.domain.errors import InvalidInput
from conveyor.domain.reports import (
    AttributionModel,
    Touch,
    attribute,
    attribution_model,
    check_attribution,
    check_range,
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
    touches = [touch(1, sent=100, clicked=90), touch(2, sent=2, opened=1), touch(3, sent=50, clicked=48)]
    assert attribute(touches, NOW, model) == 3
    assert attribute([touch(1, sent=200, clicked=5 * 24 + 1), touch(2, sent=30)], NOW, model) is None
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
        "click_days": 7, "event": "purchase"}
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
        "last click within 2 days, else last human open or delivery within 1 days")


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
