"""The panel's small pure helpers: where a sign-in may send the browser back to, how nodes and
triggers read, a step's reason in one line."""

from datetime import UTC, datetime

import pytest

from conveyor.web.drawing import describe, duration, trigger_text
from conveyor.web.pages import _reason
from conveyor.web.routes.signin import _safe_next
from tests.unit.domain.automations.conftest import automation


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/app/automations/welcome", "/app/automations/welcome"),
        ("/app/contacts?q=ada", "/app/contacts?q=ada"),
        ("https://evil.example/app/", "/app/"),
        ("//evil.example/app/", "/app/"),
        ("/app//evil.example", "/app/"),
        ("/app/\\evil.example", "/app/"),
        ("/docs", "/app/"),
        (None, "/app/"),
    ],
)
def test_sign_in_only_returns_to_a_page_of_the_panel(target, expected):
    assert _safe_next(target) == expected


def test_nodes_and_triggers_read_in_words():
    parsed = automation(
        """
        key: w
        triggers: [{list_subscribed: newsletter}, {event: order_completed}]
        nodes:
          - {id: hello, type: send_email, template: welcome-1}
          - {id: pause, type: wait, for: 7 days}
          - {id: until, type: wait_until, condition: {tag: vip}, timeout: 36 hours}
        """
    )
    assert [trigger_text(t) for t in parsed.triggers] == [
        "subscribes to newsletter",
        "event order_completed",
    ]
    assert describe(parsed.nodes["hello"]) == ("send", "Email", "welcome-1")
    assert describe(parsed.nodes["pause"]) == ("wait", "Wait", "1 week")
    assert describe(parsed.nodes["until"])[2] == "at most 36 hours"
    assert duration(90) == "90 s" and duration(3 * 86400) == "3 days"


def test_a_reason_reads_as_one_line():
    assert _reason({"why": "email welcome-1 queued"}) == "email welcome-1 queued"
    at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert _reason({"node": "welcome", "send_after": at}) == "node: welcome; send_after: 2026-01-05 09:00"
