"""What a simulation is asked in words, and how its report names a send-policy rule: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.domain.policies import Decision
from conveyor.services.simulate.inputs import Injected, injected, moment
from conveyor.services.simulate.report import rule_of

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("30d", NOW - timedelta(days=30)),
        ("36h", NOW - timedelta(hours=36)),
        ("2 days 6 hours", NOW - timedelta(days=2, hours=6)),
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T08:30:00+01:00", datetime(2026, 3, 1, 7, 30, tzinfo=UTC)),
        ("2026-03-01T08:30", datetime(2026, 3, 1, 8, 30, tzinfo=UTC)),
    ],
)
def test_a_period_end_is_a_duration_ago_a_date_or_a_moment(raw, expected):
    assert moment(raw, NOW, "from") == expected


def test_a_missing_end_takes_the_default_and_a_bad_one_names_the_option():
    assert moment(None, NOW, "to", default=NOW) == NOW
    with pytest.raises(InvalidInput) as bad:
        moment("soon", NOW, "--from")
    assert bad.value.field == "--from"


def test_injected_events_are_ordered_by_nothing_but_say_when():
    got = injected(
        [
            {"event": "cart_updated"},
            {"at": "2 days", "event": "email.opened", "properties": {"template": "t"}},
        ]
    )
    assert got == [
        Injected(timedelta(0), "cart_updated"),
        Injected(timedelta(days=2), "email.opened", {"template": "t"}),
    ]
    for bad, field in [
        ({"at": "x", "event": "e"}, "events.0.at"),
        ({"at": "1 day"}, "events.0.event"),
        ({"event": "e", "when": 1}, "events.0"),
    ]:
        with pytest.raises(InvalidInput) as err:
            injected([bad])
        assert err.value.field == field


@pytest.mark.parametrize(
    ("reason", "rule"),
    [
        (
            "deferred: email cap 1 per 16 hours; next allowed 2026-01-07T02:01+00:00",
            "email cap 1 per 16 hours",
        ),
        (
            "deferred: email cap 1 per 16 hours; email cap 3 per 7 days; next allowed "
            "2026-01-07T02:01+00:00",
            "email cap 1 per 16 hours; email cap 3 per 7 days",
        ),
        (
            "deferred: next allowed 2026-01-07T08:00+01:00 (quiet hours until 08:00 Europe/Warsaw)",
            "quiet hours",
        ),
        (
            "skipped: template promo was sent 2026-01-03T10:00+00:00 (not twice within 30 days)",
            "no repeat of a template",
        ),
        (
            "skipped: email cap 1 per 16 hours (the node skips on cap)",
            "email cap 1 per 16 hours (the node skips on cap)",
        ),
    ],
)
def test_a_policy_reason_comes_down_to_its_rule(reason, rule):
    assert rule_of(Decision("defer", None, reason)) == rule
