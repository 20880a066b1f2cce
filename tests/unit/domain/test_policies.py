"""Send policies, pure: caps over rolling windows, send windows across DST, repeats, send-at,
and a property test that a delivered sequence never breaks a cap and loses nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.domain.errors import InvalidInput
from conveyor.domain.policies import Outgoing, Sent, decide, merge, parse_policy

NOW = datetime(2026, 3, 28, 22, 0, tzinfo=UTC)  # 23:00 in Warsaw, the night before DST starts
POLICY = parse_policy({
    "caps": {"email": [{"max": 1, "per": "16 hours"}, {"max": 3, "per": "7 days"}],
             "sms": [{"max": 1, "per": "1 day"}]},
    "windows": {"sms": {"from": "08:00", "to": "21:00"}},
    "repeat_within": "30 days",
})


def email(template="t", **kw):
    return Outgoing("email", template, "marketing", **kw)


def test_sms_at_night_waits_for_eight_in_the_morning_across_the_dst_change():
    d = decide(Outgoing("sms", "s", "marketing"), [], POLICY, NOW, "Europe/Warsaw")
    assert d.action == "defer"
    assert d.until == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST, the clocks moved
    assert "quiet hours until 08:00 Europe/Warsaw" in d.reason
    assert "2026-03-29T08:00+02:00" in d.reason


def test_autumn_dst_change_too():
    night = datetime(2026, 10, 24, 21, 30, tzinfo=UTC)  # 23:30 CEST, clocks go back at 03:00
    d = decide(Outgoing("sms", "s", "marketing"), [], POLICY, night, "Europe/Warsaw")
    assert d.until == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)  # 08:00 CET


def test_caps_defer_to_the_earliest_time_all_rules_allow():
    history = [Sent("email", "a", NOW - timedelta(hours=2))]
    d = decide(email("b"), history, POLICY, NOW, "UTC")
    assert d.action == "defer" and d.until == NOW + timedelta(hours=14)
    assert d.reason.startswith("deferred: email cap 1 per 16 hours; next allowed")
    week = [Sent("email", str(i), NOW - timedelta(days=2 * i, hours=17)) for i in range(3)]
    d = decide(email("b"), week, POLICY, NOW, "UTC")
    assert d.until == NOW - timedelta(days=4, hours=17) + timedelta(days=7)
    assert "email cap 3 per 7 days" in d.reason


def test_a_node_can_skip_on_cap_instead():
    history = [Sent("email", "a", NOW - timedelta(hours=1))]
    d = decide(email("b", on_cap="skip"), history, POLICY, NOW, "UTC")
    assert d.action == "skip" and "email cap 1 per 16 hours" in d.reason


def test_the_same_template_is_not_sent_twice_unless_allowed():
    history = [Sent("email", "promo", NOW - timedelta(days=20))]
    assert decide(email("promo"), history, POLICY, NOW, "UTC").action == "skip"
    assert decide(email("promo", allow_repeat=True), history, POLICY, NOW, "UTC").action == "send"
    old = [Sent("email", "promo", NOW - timedelta(days=31))]
    assert decide(email("promo"), old, POLICY, NOW, "UTC").action == "send"


def test_transactional_messages_pass_every_rule():
    history = [Sent("email", "a", NOW - timedelta(minutes=1))]
    d = decide(Outgoing("sms", "otp", "transactional"), history, POLICY, NOW, "Europe/Warsaw")
    assert d.action == "send"


def test_send_at_local_time():
    created = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)  # 11:00 in New York
    d = decide(email(send_at="09:00", created_at=created), [], POLICY, created, "America/New_York")
    assert d.until == datetime(2026, 6, 2, 13, 0, tzinfo=UTC)
    later = d.until
    assert decide(email(send_at="09:00", created_at=created), [], POLICY, later,
                  "America/New_York").action == "send"


def test_overnight_windows_and_weekdays():
    policy = parse_policy({"windows": {"email": {"from": "22:00", "to": "06:00",
                                                 "weekdays": ["fri"]}}})
    friday_noon = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)  # a Friday
    d = decide(email(), [], policy, friday_noon, "UTC")
    assert d.until == datetime(2026, 1, 2, 22, 0, tzinfo=UTC)
    saturday_early = datetime(2026, 1, 3, 3, 0, tzinfo=UTC)  # Friday night's window
    assert decide(email(), [], policy, saturday_early, "UTC").action == "send"


def test_bad_policies_name_the_field():
    with pytest.raises(InvalidInput) as bad:
        parse_policy({"caps": {"email": [{"max": 0, "per": "1 day"}]}})
    assert bad.value.field == "send_policy.caps.email.0.max"
    with pytest.raises(InvalidInput) as bad:
        parse_policy({"windows": {"sms": {"from": "8am", "to": "21:00"}}})
    assert bad.value.field == "send_policy.windows.sms.from"
    with pytest.raises(InvalidInput) as bad:
        parse_policy({"caps": {"webhook": []}})
    assert bad.value.field == "send_policy.caps.webhook"


def test_a_contacts_override_replaces_the_workspaces_channel_by_channel():
    base = {"caps": {"email": [{"max": 3, "per": "7 days"}], "sms": [{"max": 1, "per": "1 day"}]}}
    merged = merge(base, {"caps": {"email": [{"max": 1, "per": "7 days"}]}})
    assert merged["caps"] == {"email": [{"max": 1, "per": "7 days"}],
                              "sms": [{"max": 1, "per": "1 day"}]}


CAPS = st.lists(
    st.tuples(st.integers(1, 3), st.sampled_from([3600, 6 * 3600, 16 * 3600, 86400, 7 * 86400])),
    min_size=1, max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(
    caps=CAPS,
    arrivals=st.lists(st.tuples(st.integers(0, 14 * 24), st.booleans(), st.integers(0, 2)),
                      min_size=1, max_size=25),
    night=st.booleans(),
)
def test_delivered_sequences_never_break_a_cap_and_nothing_is_lost(caps, arrivals, night):
    """Messages arrive at random hours (some skip on cap); a delivery loop decides each when it
    is due, like the worker. The sends never break a cap, every message ends sent or skipped
    (never both), and deferred ones go eventually."""
    raw = {"caps": {"email": [{"max": n, "per": f"{s} seconds"} for n, s in caps]}}
    if night:
        raw["windows"] = {"email": {"from": "08:00", "to": "20:00"}}
    policy = parse_policy(raw)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    due = {i: start + timedelta(hours=h) for i, (h, _, _) in enumerate(arrivals)}
    sent: dict[int, datetime] = {}
    skipped: set[int] = set()
    history: list[Sent] = []
    for _ in range(10_000):
        waiting = [i for i in due if i not in sent and i not in skipped]
        if not waiting:
            break
        # The worker takes what is due first (ties: higher priority, then older).
        i = min(waiting, key=lambda k: (due[k], -arrivals[k][2], k))
        now = due[i]
        skip = arrivals[i][1]
        d = decide(Outgoing("email", f"t{i}", "marketing", on_cap="skip" if skip else "defer"),
                   history, policy, now, "Europe/Warsaw")
        if d.action == "send":
            sent[i] = now
            history.append(Sent("email", f"t{i}", now))
        elif d.action == "skip":
            skipped.add(i)
        else:
            assert d.until is not None and d.until > now
            due[i] = d.until
    assert set(sent) | skipped == set(due)  # nothing lost
    assert not set(sent) & skipped  # nothing both
    times = sorted(sent.values())
    for n, seconds in caps:
        window = timedelta(seconds=seconds)
        for j, t in enumerate(times):
            assert sum(1 for u in times[j:] if u < t + window) <= n
    if night:
        from zoneinfo import ZoneInfo

        for t in times:
            assert 8 <= t.astimezone(ZoneInfo("Europe/Warsaw")).hour < 20
