"""Split-test decisions: an always-valid sequential test (mSPRT) over per-path counts, pure.

`decide(arms, rules, started_at, now)` is handed each path's counts (contacts who took it, and of
those who met the metric; unsubscribes and complaints for the guardrails) and returns a Decision
with its statistics. It may be called after every batch of contacts without inflating its error
rate: the test is the mixture sequential probability ratio test of Johari, Pekelis and Walsh
("Always valid inference", 2017) on the difference of two proportions. With the difference
`d = p_b - p_a`, its variance under "no difference" `V = p(1-p)(1/n_a + 1/n_b)` (pooled rate `p`)
and a normal mixing distribution N(0, s^2) over the true difference, the likelihood ratio

    L = sqrt(V / (V + s^2)) * exp(s^2 d^2 / (2 V (V + s^2)))

is (asymptotically) a martingale under no difference, so by Ville's inequality the chance it
EVER reaches 1/alpha is at most alpha, however often it is looked at. A path wins when it leads
every other path and L >= (k-1)/alpha against each (Bonferroni over the k-1 comparisons);
`tests/unit/domain/test_experiments_simulation.py` checks the false-winner rate and the power
with this very function. The interval on the difference is the matching confidence sequence
(valid at every look): d +- sqrt(V'(V'+s^2)/s^2 * (log((V'+s^2)/V') + 2 log((k-1)/alpha)))
with the unpooled variance V' (rates smoothed by half a contact so it is never 0). The mixing
spread is relative to the pooled rate, s = tau * p (tau = 0.3: lifts of about 30 % are what the
test is tuned to find fastest; it still finds larger and smaller ones), so one default serves
click rates of 2 % and conversion rates of 40 % alike; p converges to the common rate under "no
difference", so the ratio stays (asymptotically) a martingale.

Guardrails: a path whose unsubscribe or complaint rate is higher than another's by the same
always-valid test (at `guardrail_alpha`) is blocked and cannot win, not even by a fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor.domain.conditions import parse_duration
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import format_datetime

FALLBACKS = ("keep", "best", "first")  # at max duration without a clear winner
METRICS = ("clicked", "converted", "condition")
STATUSES = ("collecting", "running", "decided", "inconclusive")
DEFAULT_TAU = 0.3  # the mixing spread, relative to the pooled rate: lifts of about 30 %


@dataclass(frozen=True)
class ArmCounts:
    """One path's counts: contacts who took it, and of those who met the metric (and guardrails)."""

    name: str
    entered: int
    converted: int
    unsubscribed: int = 0
    complained: int = 0


@dataclass(frozen=True)
class Rules:
    """How a test decides: minimum contacts per path, maximum duration, fallback, error rate."""

    min_sample: int = 500
    max_duration: timedelta | None = None
    fallback: str = "keep"
    alpha: float = 0.05
    guardrail_alpha: float = 0.05
    tau: float = DEFAULT_TAU


@dataclass(frozen=True)
class TestSpec:
    """A split node's `test:`: what counts as a success, within how long, and its Rules."""

    metric: str = "clicked"  # clicked | converted | condition (the node's `condition`)
    event: str = "order_completed"  # what `converted` counts
    window: int = 7 * 86400  # seconds after taking the path in which the metric counts
    rules: Rules = Rules(max_duration=timedelta(days=30))

    def as_dict(self) -> dict[str, Any]:
        r = self.rules
        return {
            "metric": self.metric,
            **({"event": self.event} if self.metric == "converted" else {}),
            "window_seconds": self.window,
            "min_sample": r.min_sample,
            "max_duration_seconds": (
                int(r.max_duration.total_seconds()) if r.max_duration is not None else None
            ),
            "fallback": r.fallback,
            "confidence": round(1 - r.alpha, 6),
        }


TEST_KEYS = ("metric", "event", "window", "min_sample", "max_duration", "fallback", "confidence")


def parse_test(raw: Any, path: str) -> TestSpec:
    """A split node's `test:` mapping, validated; errors name the field."""
    if not isinstance(raw, dict):
        raise InvalidInput(path, "a test is a mapping: {metric: clicked, min_sample: 500, ...}")
    extra = sorted(set(raw) - set(TEST_KEYS))
    if extra:
        raise InvalidInput(f"{path}.{extra[0]}", f"a test takes {', '.join(TEST_KEYS)}")
    metric = raw.get("metric", "clicked")
    if metric not in METRICS:
        raise InvalidInput(f"{path}.metric", f"one of {', '.join(METRICS)}")
    event = raw.get("event", "order_completed")
    if metric != "converted" and "event" in raw:
        raise InvalidInput(f"{path}.event", "goes with metric: converted")
    if not isinstance(event, str) or not 1 <= len(event) <= 200:
        raise InvalidInput(f"{path}.event", "names an event")
    window = parse_duration(raw.get("window", "7 days"), f"{path}.window")
    min_sample = raw.get("min_sample", 500)
    if (
        not isinstance(min_sample, int)
        or isinstance(min_sample, bool)
        or not (10 <= min_sample <= 10_000_000)
    ):
        raise InvalidInput(f"{path}.min_sample", "contacts per path: a whole number >= 10")
    max_raw = raw.get("max_duration", "30 days")
    max_duration = timedelta(seconds=parse_duration(max_raw, f"{path}.max_duration"))
    fallback = raw.get("fallback", "keep")
    if fallback not in FALLBACKS:
        raise InvalidInput(
            f"{path}.fallback",
            "without a clear winner at max_duration: keep (splitting), best or first",
        )
    confidence = raw.get("confidence", 0.95)
    if (
        not isinstance(confidence, int | float)
        or isinstance(confidence, bool)
        or not (0.8 <= confidence <= 0.999)
    ):
        raise InvalidInput(f"{path}.confidence", "a number from 0.8 to 0.999 (default 0.95)")
    rules = Rules(
        min_sample=min_sample,
        max_duration=max_duration,
        fallback=fallback,
        alpha=round(1 - float(confidence), 6),
    )
    return TestSpec(metric, event, window, rules)


@dataclass(frozen=True)
class ArmResult:
    name: str
    entered: int
    converted: int
    rate: float
    unsubscribed: int = 0
    complained: int = 0
    blocked: str | None = None  # why this path cannot win (a guardrail), if so

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "entered": self.entered,
            "converted": self.converted,
            "rate": round(self.rate, 6),
            "unsubscribed": self.unsubscribed,
            "complained": self.complained,
            "blocked": self.blocked,
        }


@dataclass(frozen=True)
class Comparison:
    """The leading path against one other: difference, lift and their always-valid intervals."""

    arm: str
    baseline: str
    difference: float
    interval: tuple[float, float]
    lift: float | None  # relative: difference / baseline rate (None when the baseline is 0)
    lift_interval: tuple[float, float] | None
    likelihood_ratio: float
    p_value: float  # always-valid: min(1, 1/L) at this look
    significant: bool

    def as_dict(self) -> dict[str, Any]:
        def r(x: float | None) -> float | None:
            return None if x is None else round(x, 6)

        return {
            "arm": self.arm,
            "baseline": self.baseline,
            "difference": r(self.difference),
            "interval": [r(x) for x in self.interval],
            "lift": r(self.lift),
            "lift_interval": (
                None if self.lift_interval is None else [r(x) for x in self.lift_interval]
            ),
            "likelihood_ratio": float(f"{self.likelihood_ratio:.6g}"),
            "p_value": r(self.p_value),
            "significant": self.significant,
        }


@dataclass(frozen=True)
class Decision:
    """Where a test stands at `checked_at`; final once `decided` or `inconclusive`."""

    status: str  # collecting | running | decided | inconclusive
    winner: str | None
    rule: str | None  # significant | best at max duration | first at max duration | None
    reason: str
    arms: tuple[ArmResult, ...]
    comparisons: tuple[Comparison, ...]
    threshold: float  # the likelihood ratio a winner must reach against each other path
    checked_at: datetime

    @property
    def final(self) -> bool:
        return self.status in ("decided", "inconclusive")

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "winner": self.winner,
            "rule": self.rule,
            "reason": self.reason,
            "arms": [a.as_dict() for a in self.arms],
            "comparisons": [c.as_dict() for c in self.comparisons],
            "threshold": round(self.threshold, 6),
            "checked_at": format_datetime(self.checked_at),
        }


def log_likelihood_ratio(xa: int, na: int, xb: int, nb: int, tau: float) -> float:
    """log L of the mSPRT for p_b != p_a (pooled variance); 0 when there is no evidence yet."""
    if na <= 0 or nb <= 0:
        return 0.0
    pooled = (xa + xb) / (na + nb)
    v = pooled * (1 - pooled) * (1 / na + 1 / nb)
    if v <= 0:
        return 0.0
    d = xb / nb - xa / na
    t2 = (tau * pooled) ** 2
    return 0.5 * math.log(v / (v + t2)) + t2 * d * d / (2 * v * (v + t2))


def _half_width(xa: int, na: int, xb: int, nb: int, tau: float, threshold: float) -> float:
    """Half the width of the confidence sequence on p_b - p_a at this look."""
    pa, pb = (xa + 0.5) / (na + 1), (xb + 0.5) / (nb + 1)
    v = pa * (1 - pa) / max(na, 1) + pb * (1 - pb) / max(nb, 1)
    t2 = (tau * (xa + xb + 1) / (na + nb + 2)) ** 2
    return math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) + 2 * math.log(threshold)))


def compare(arm: ArmCounts, base: ArmCounts, tau: float, threshold: float) -> Comparison:
    """`arm` against `base` on the metric: the statistics a decision shows."""
    ra = base.converted / base.entered if base.entered else 0.0
    rb = arm.converted / arm.entered if arm.entered else 0.0
    d = rb - ra
    log_l = log_likelihood_ratio(base.converted, base.entered, arm.converted, arm.entered, tau)
    h = _half_width(base.converted, base.entered, arm.converted, arm.entered, tau, threshold)
    interval = (max(-1.0, d - h), min(1.0, d + h))
    lift = d / ra if ra > 0 else None
    lift_interval = (interval[0] / ra, interval[1] / ra) if ra > 0 else None
    ratio = math.exp(min(log_l, 700.0))
    return Comparison(
        arm=arm.name,
        baseline=base.name,
        difference=d,
        interval=interval,
        lift=lift,
        lift_interval=lift_interval,
        likelihood_ratio=ratio,
        p_value=min(1.0, 1 / ratio),
        significant=d > 0 and log_l >= math.log(threshold),
    )


def _worse(a: int, na: int, b: int, nb: int, tau: float, threshold: float) -> bool:
    """Is rate a/na significantly HIGHER than b/nb (always-valid)?"""
    if na <= 0 or nb <= 0 or a / na <= b / nb:
        return False
    return log_likelihood_ratio(b, nb, a, na, tau) >= math.log(threshold)


def guardrail(arms: Sequence[ArmCounts], rules: Rules) -> dict[str, str]:
    """Paths that cannot win: unsubscribe or complaint rate significantly above another path's."""
    k = len(arms)
    threshold = max(1, k - 1) / rules.guardrail_alpha
    blocked: dict[str, str] = {}
    for arm in arms:
        for other in arms:
            if other is arm:
                continue
            for what in ("unsubscribed", "complained"):
                mine, theirs = getattr(arm, what), getattr(other, what)
                if _worse(mine, arm.entered, theirs, other.entered, rules.tau, threshold):
                    blocked.setdefault(
                        arm.name,
                        f"{what} {mine}/{arm.entered} is significantly above "
                        f"{other.name}'s {theirs}/{other.entered}",
                    )
    return blocked


def decide(
    arms: Sequence[ArmCounts], rules: Rules, started_at: datetime, now: datetime
) -> Decision:
    """Where the test stands at `now`: a winner once the leader beats every other path
    significantly (after `min_sample` contacts on each), else the fallback at `max_duration`."""
    if len(arms) < 2:
        raise ValueError("a split test needs at least two paths")
    k = len(arms)
    threshold = (k - 1) / rules.alpha
    blocked = guardrail(arms, rules)
    results = tuple(
        ArmResult(
            a.name,
            a.entered,
            a.converted,
            a.converted / a.entered if a.entered else 0.0,
            a.unsubscribed,
            a.complained,
            blocked.get(a.name),
        )
        for a in arms
    )
    eligible = [a for a in arms if a.name not in blocked]
    rate = {r.name: r.rate for r in results}
    leader = max(eligible, key=lambda a: rate[a.name]) if eligible else None
    comparisons = (
        tuple(compare(leader, o, rules.tau, threshold) for o in arms if o is not leader)
        if leader is not None
        else ()
    )

    def made(status: str, winner: str | None, rule: str | None, reason: str) -> Decision:
        return Decision(status, winner, rule, reason, results, comparisons, threshold, now)

    smallest = min(a.entered for a in arms)
    expired = rules.max_duration is not None and now >= started_at + rules.max_duration
    if (
        smallest >= rules.min_sample
        and leader is not None
        and all(c.significant for c in comparisons)
    ):
        worst = min(comparisons, key=lambda c: c.likelihood_ratio)
        return made(
            "decided",
            leader.name,
            "significant",
            f"{leader.name} converts better than every other path "
            f"(likelihood ratio {worst.likelihood_ratio:.3g} >= {threshold:.3g})",
        )
    if not expired:
        if smallest < rules.min_sample:
            return made(
                "collecting",
                None,
                None,
                f"{smallest} of {rules.min_sample} contacts on the smallest path",
            )
        return made("running", None, None, "no significant difference yet")
    if rules.fallback == "best" and leader is not None:
        return made(
            "decided",
            leader.name,
            "best at max duration",
            f"no significant difference at the maximum duration; {leader.name} has the best rate",
        )
    first = arms[0]
    if rules.fallback == "first" and first.name not in blocked:
        return made(
            "decided",
            first.name,
            "first at max duration",
            f"no significant difference at the maximum duration; {first.name} is kept",
        )
    return made(
        "inconclusive",
        None,
        None,
        "no significant difference at the maximum duration; the split continues",
    )
