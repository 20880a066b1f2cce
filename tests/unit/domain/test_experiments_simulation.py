"""Proof by simulation: the live decision rule, checked after every 50 contacts, is honest.

Seeded and pure. 2,000 A/A tests (both paths click at 3 %) may declare a false winner in at most
5 % of them; with 3 % against 4.5 % the better path must win in at least 80 % of 1,000 tests.
Each test stops at 5,000 contacts per path (the maximum duration, here counted in contacts).
"""

from __future__ import annotations

import bisect
import math
import random
from datetime import UTC, datetime

from conveyor.domain.experiments import ArmCounts, Rules, decide

BATCH = 50  # contacts between two looks, split evenly
HORIZON = 5000  # contacts per path when a test stops
RULES = Rules(min_sample=500)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _cdf(n: int, p: float) -> list[float]:
    """The binomial CDF: one uniform draw then gives a whole batch's clicks."""
    out, acc = [], 0.0
    for k in range(n + 1):
        acc += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        out.append(acc)
    return out


def _winners(rate_a: float, rate_b: float, tests: int, seed: int) -> dict[str | None, int]:
    rng = random.Random(seed)
    half = BATCH // 2
    cdf_a, cdf_b = _cdf(half, rate_a), _cdf(half, rate_b)
    winners: dict[str | None, int] = {"A": 0, "B": 0, None: 0}
    for _ in range(tests):
        n = xa = xb = 0
        winner = None
        while n < HORIZON:
            n += half
            xa += bisect.bisect_left(cdf_a, rng.random())
            xb += bisect.bisect_left(cdf_b, rng.random())
            decision = decide([ArmCounts("A", n, xa), ArmCounts("B", n, xb)], RULES, NOW, NOW)
            if decision.status == "decided":
                winner = decision.winner
                break
        winners[winner] += 1
    return winners


def test_aa_tests_checked_after_every_batch_rarely_declare_a_winner() -> None:
    winners = _winners(0.03, 0.03, 2000, seed=10)
    false = winners["A"] + winners["B"]
    assert false / 2000 <= 0.05, winners


def test_a_real_difference_is_found() -> None:
    winners = _winners(0.03, 0.045, 1000, seed=11)
    assert winners["B"] / 1000 >= 0.80, winners
    assert winners["A"] <= 10, winners


def test_looking_often_with_a_naive_test_would_not_be_honest() -> None:
    """The control: a fixed-horizon z-test at every look declares many false winners."""
    rng = random.Random(12)
    half = BATCH // 2
    cdf = _cdf(half, 0.03)
    false = 0
    for _ in range(300):
        n = xa = xb = 0
        while n < HORIZON:
            n += half
            xa += bisect.bisect_left(cdf, rng.random())
            xb += bisect.bisect_left(cdf, rng.random())
            pooled = (xa + xb) / (2 * n)
            v = pooled * (1 - pooled) * 2 / n
            if n >= RULES.min_sample and v > 0 and abs(xb - xa) / n / math.sqrt(v) > 1.96:
                false += 1
                break
    assert false / 300 > 0.10
