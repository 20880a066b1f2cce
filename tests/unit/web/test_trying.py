"""Test a contact's form: the events a marketer types, one a line, and a step's time told from
the start of the test."""

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.errors import InvalidInput
from conveyor.web.routes.trying import events_of, since


def test_events_one_a_line_with_a_delay_and_properties():
    text = 'cart_updated {"items": [{"name": "Mug"}]}\n\n# a comment\norder_completed after 30 minutes\nemail.opened@2 days'
    assert events_of(text) == [
        {"event": "cart_updated", "at": "now", "properties": {"items": [{"name": "Mug"}]}},
        {"event": "order_completed", "at": "30 minutes"},
        {"event": "email.opened", "at": "2 days"},
    ]
    with pytest.raises(InvalidInput, match="line 1: properties are not JSON"):
        events_of("cart_updated {nope}")


def test_a_steps_time_from_the_start():
    start = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert since(start, start) == "at the start"
    assert since(start, start + timedelta(hours=1)) == "+1 hour"
    assert since(start, start + timedelta(days=1, hours=1, minutes=5)) == "+1 day 1 hour"
    assert since(start, start + timedelta(minutes=30)) == "+30 minutes"
