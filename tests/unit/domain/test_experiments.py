"""The split-test decision: minimum sample, significance, fallbacks, guardrails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor.domain.experiments import ArmCounts, Rules, decide, log_likelihood_ratio

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_below_the_minimum_sample_nothing_is_decided() -> None:
    arms = [ArmCounts("A", 400, 10), ArmCounts("B", 499, 200)]
    d = decide(arms, Rules(min_sample=500), T0, T0)
    assert d.status == "collecting" and d.winner is None
    assert "399" not in d.reason and "400 of 500" in d.reason


def test_a_clear_difference_decides_with_its_statistics() -> None:
    arms = [ArmCounts("A", 600, 30), ArmCounts("B", 600, 90)]
    d = decide(arms, Rules(min_sample=500), T0, T0 + timedelta(days=1))
    assert (d.status, d.winner, d.rule) == ("decided", "B", "significant")
    (c,) = d.comparisons
    assert c.arm == "B" and c.baseline == "A"
    assert c.difference == pytest.approx(0.1)
    assert c.interval[0] > 0 and c.interval[1] > c.difference
    assert c.lift == pytest.approx(2.0)
    assert c.lift_interval is not None and c.lift_interval[0] > 0
    assert c.likelihood_ratio >= 20 and c.p_value <= 0.05
    assert d.as_dict()["arms"][1]["rate"] == 0.15


def test_a_small_difference_keeps_running_and_the_interval_covers_zero() -> None:
    arms = [ArmCounts("A", 600, 30), ArmCounts("B", 600, 36)]
    d = decide(arms, Rules(min_sample=500), T0, T0)
    assert d.status == "running" and d.winner is None
    (c,) = d.comparisons
    assert c.interval[0] < 0 < c.interval[1] and not c.significant


@pytest.mark.parametrize(
    ("fallback", "status", "winner"),
    [("keep", "inconclusive", None), ("best", "decided", "B"), ("first", "decided", "A")],
)
def test_at_the_maximum_duration_the_fallback_applies(
    fallback: str, status: str, winner: str | None
) -> None:
    arms = [ArmCounts("A", 600, 30), ArmCounts("B", 600, 36)]
    rules = Rules(min_sample=500, max_duration=timedelta(days=7), fallback=fallback)
    assert decide(arms, rules, T0, T0 + timedelta(days=6)).status == "running"
    d = decide(arms, rules, T0, T0 + timedelta(days=7))
    assert (d.status, d.winner) == (status, winner)


def test_a_path_that_drives_unsubscribes_cannot_win() -> None:
    arms = [ArmCounts("A", 600, 30, unsubscribed=2), ArmCounts("B", 600, 90, unsubscribed=40)]
    d = decide(arms, Rules(min_sample=500, max_duration=timedelta(days=1), fallback="best"), T0, T0)
    assert d.winner is None
    assert d.arms[1].blocked and "unsubscribed 40/600" in d.arms[1].blocked
    # even the fallback takes only an unblocked path
    late = decide(
        arms,
        Rules(min_sample=500, max_duration=timedelta(days=1), fallback="best"),
        T0,
        T0 + timedelta(days=2),
    )
    assert late.winner == "A"


def test_complaints_block_too_and_the_first_fallback_never_takes_a_blocked_path() -> None:
    arms = [ArmCounts("A", 600, 30, complained=30), ArmCounts("B", 600, 30, complained=0)]
    rules = Rules(min_sample=100, max_duration=timedelta(days=1), fallback="first")
    d = decide(arms, rules, T0, T0 + timedelta(days=1))
    assert d.arms[0].blocked and d.status == "inconclusive"


def test_three_paths_need_the_leader_to_beat_each_other_path() -> None:
    rules = Rules(min_sample=500)
    close = [ArmCounts("A", 800, 40), ArmCounts("B", 800, 100), ArmCounts("C", 800, 95)]
    assert decide(close, rules, T0, T0).status == "running"
    clear = [ArmCounts("A", 800, 40), ArmCounts("B", 800, 100), ArmCounts("C", 800, 35)]
    d = decide(clear, rules, T0, T0)
    assert d.winner == "B" and d.threshold == pytest.approx(40)
    assert {c.baseline for c in d.comparisons} == {"A", "C"}


def test_no_conversions_is_no_evidence() -> None:
    assert log_likelihood_ratio(0, 1000, 0, 1000, 0.01) == 0.0
    d = decide([ArmCounts("A", 1000, 0), ArmCounts("B", 1000, 0)], Rules(min_sample=10), T0, T0)
    assert d.status == "running" and d.comparisons[0].lift is None
