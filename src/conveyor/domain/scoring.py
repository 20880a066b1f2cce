"""Lead scoring: a workspace's scoring model (named scores, rules, caps, decay) and the decay math.

A score's value at `now` is a pure function of time: `exact(norm * factor(now) + fixed)`, where
`fixed` holds the points of field rules (they hold while the field matches, and do not decay),
`norm` the sum of every event point `p` earned at `t` as `p * weight(t)`, and with `d(t)` the
whole days from the epoch to `t`: `weight(t) = 2 ** (d(t) * day / half_life)` and
`factor(now) = 2 ** (-d(now) * day / half_life)`. So each point decays from the day it was
earned, a day at a time (points earned the same day keep their face value together, so five
clicks of +10 make 50 and cross 50), the sum needs no per-award arithmetic at read time, and SQL
computes the same double as Python: `norm * :factor + fixed` with the factor computed once in
Python and bound, then `exact` — rounding to 6 decimals as floor(x * 1e6 + 0.5) / 1e6, which
each database and Python do alike and which absorbs the last-bit noise of 2^k * 2^-k. Without
decay both weight and factor are 1. The epoch is midnight (UTC) of the day the model was last
applied, moved forward by `rebase` before weights outgrow a double.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor.domain.conditions import Condition, Parser, parse_duration
from conveyor.domain.errors import InvalidInput

if TYPE_CHECKING:
    from conveyor.domain.automations.model import Trigger

DEFAULT_SCORE = "score"  # the contact's own `score` column: manual points, never decays
NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
STEP = 86400  # decay moves a day at a time
# Weights grow by 2 every half-life from the epoch; past this many the epoch moves (`rebase`),
# far below a double's 2**1023.
MAX_HALF_LIVES = 400


def exact(x: float) -> float:
    """A value as conditions compare it: to 6 decimals, the same way SQL computes it."""
    return math.floor(x * 1e6 + 0.5) / 1e6


def epoch_of(moment: datetime) -> datetime:
    """Decay's epoch for a model applied at `moment`: that day's midnight, UTC."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Decay:
    """Exponential decay a day at a time: a point is worth half after `half_life` seconds."""

    half_life: float  # seconds, at least a day
    epoch: datetime

    def days(self, t: datetime) -> int:
        return math.floor((t - self.epoch).total_seconds() / STEP)

    def factor(self, now: datetime) -> float:
        return 2.0 ** (-(self.days(now) * STEP) / self.half_life)

    def weight(self, at: datetime) -> float:
        return 2.0 ** ((self.days(at) * STEP) / self.half_life)

    def day_start(self, days: int) -> datetime:
        return self.epoch + timedelta(seconds=days * STEP)


def factor(decay: Decay | None, now: datetime) -> float:
    return 1.0 if decay is None else decay.factor(now)


def weight(decay: Decay | None, at: datetime) -> float:
    return 1.0 if decay is None else decay.weight(at)


def needs_rebase(decay: Decay | None, now: datetime) -> int:
    """Whole days to move the epoch forward by (0: none), so weights stay small."""
    if decay is None:
        return 0
    days = decay.days(now)
    return days if days * STEP / decay.half_life > MAX_HALF_LIVES else 0


@dataclass
class ScoreState:
    """One contact's score: see the module docstring for how a value follows from these."""

    norm: float = 0.0
    fixed: float = 0.0
    decay: Decay | None = None

    def value(self, now: datetime) -> float:
        return exact(self.norm * factor(self.decay, now) + self.fixed)

    def add(self, points: float, at: datetime) -> None:
        self.norm += points * weight(self.decay, at)


@dataclass(frozen=True)
class Cap:
    """At most `points` from one rule in any `seconds` (rolling, by the events' timestamps:
    an award counts what the rule gave within `seconds` of it, before or after)."""

    points: float
    seconds: int


@dataclass(frozen=True)
class EventRule:
    id: str
    on: Trigger
    points: float
    cap: Cap | None = None


@dataclass(frozen=True)
class FieldRule:
    id: str
    when: Condition
    points: float


@dataclass(frozen=True)
class ScoreSpec:
    name: str
    half_life: float | None  # seconds; None: no decay
    event_rules: tuple[EventRule, ...] = ()
    field_rules: tuple[FieldRule, ...] = ()

    def decay(self, epoch: datetime) -> Decay | None:
        return None if self.half_life is None else Decay(self.half_life, epoch)


@dataclass(frozen=True)
class ScoringModel:
    scores: dict[str, ScoreSpec] = field(default_factory=dict)

    def events(self) -> set[str]:
        """The event names any rule scores."""
        return {r.on.name for s in self.scores.values() for r in s.event_rules}

    def has_field_rules(self) -> bool:
        return any(s.field_rules for s in self.scores.values())


def parse_model(raw: Any, parser: Parser) -> ScoringModel:
    """A scoring model from YAML/JSON data; InvalidInput names the bad part (`scores.fit.…`)."""
    from conveyor.domain.automations.parse import trigger_preset  # parse imports nodes → here

    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or set(raw) - {"scores"}:
        raise InvalidInput("scores", "a scoring model is {scores: {NAME: {decay?, rules}}}")
    scores_raw = raw.get("scores") or {}
    if not isinstance(scores_raw, dict):
        raise InvalidInput("scores", "a mapping of score names to their rules")
    scores: dict[str, ScoreSpec] = {}
    for name, spec in scores_raw.items():
        here = f"scores.{name}"
        if not isinstance(name, str) or not NAME.match(name) or name == DEFAULT_SCORE:
            raise InvalidInput(
                here, "a score name is 1-40 of a-z, 0-9 and _ ('score' is the contact's own)"
            )
        if not isinstance(spec, dict) or set(spec) - {"decay", "rules", "label"}:
            raise InvalidInput(here, "a score has 'rules' and optionally 'decay'")
        half_life = _decay(spec.get("decay"), f"{here}.decay")
        rules_raw = spec.get("rules") or []
        if not isinstance(rules_raw, list):
            raise InvalidInput(f"{here}.rules", "a list of rules")
        events: list[EventRule] = []
        fields: list[FieldRule] = []
        ids: set[str] = set()
        for i, rule in enumerate(rules_raw):
            where = f"{here}.rules.{i}"
            if not isinstance(rule, dict):
                raise InvalidInput(where, "a rule is {on: TRIGGER, points: N} or {when, points}")
            rule_id = rule.get("id", f"rule-{i}")
            if not isinstance(rule_id, str) or not NAME.match(rule_id.replace("-", "_")):
                raise InvalidInput(f"{where}.id", "1-40 of a-z, 0-9, - and _")
            if rule_id in ids:
                raise InvalidInput(f"{where}.id", f"rule id '{rule_id}' is used twice")
            ids.add(rule_id)
            points = rule.get("points")
            if (
                not isinstance(points, int | float)
                or isinstance(points, bool)
                or not math.isfinite(points)
                or abs(points) > 1_000_000
            ):
                raise InvalidInput(f"{where}.points", "a number of points, -1000000 to 1000000")
            if "when" not in rule:
                # an event rule: the rule is a trigger preset ({event, where} or e.g.
                # {page_visited: URL-glob}) with its points and cap
                on = {k: v for k, v in rule.items() if k not in ("id", "points", "cap")}
                if not on:
                    raise InvalidInput(
                        where, "a rule scores an event ({event: NAME, where?}) or fields (when)"
                    )
                trigger = trigger_preset(on, where, parser)
                if trigger.date is not None or trigger.name in ("score.changed", "score.adjusted"):
                    raise InvalidInput(where, "a rule scores an event, not a date or a score")
                cap = _cap(rule["cap"], f"{where}.cap") if rule.get("cap") is not None else None
                events.append(EventRule(rule_id, trigger, float(points), cap))
            else:
                extra = set(rule) - {"id", "when", "points"}
                if extra:
                    raise InvalidInput(f"{where}.{sorted(extra)[0]}", "not part of a field rule")
                condition = parser.parse(rule["when"], f"{where}.when")
                fields.append(FieldRule(rule_id, condition, float(points)))
        scores[name] = ScoreSpec(name, half_life, tuple(events), tuple(fields))
    return ScoringModel(scores)


def decays_of(definition: Any, epoch: datetime) -> dict[str, Decay | None]:
    """Each score's decay from a stored (valid) model, without parsing its rules."""
    out: dict[str, Decay | None] = {}
    for name, spec in ((definition or {}).get("scores") or {}).items():
        try:
            half_life = _decay((spec or {}).get("decay"), name)
        except InvalidInput:
            continue
        out[name] = None if half_life is None else Decay(half_life, epoch)
    return out


def values_at(
    states: Iterable[tuple[str, float, float]], decays: dict[str, Decay | None], now: datetime
) -> dict[str, float]:
    """Named scores' values at `now`, rounded to 2 decimals (what people and templates see)."""
    return {
        name: round(norm * factor(decays[name], now) + fixed, 2)
        for name, norm, fixed in states
        if name in decays
    }


def _decay(raw: Any, here: str) -> float | None:
    """Seconds of half-life from {half_life: D} or {percent: P, per: D} (P % lost per D)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput(here, "{half_life: 30 days} or {percent: 10, per: 30 days}")
    if "half_life" in raw:
        if set(raw) != {"half_life"}:
            raise InvalidInput(here, "half_life stands alone")
        value = raw["half_life"]
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise InvalidInput(f"{here}.half_life", "a half-life is a positive duration")
        seconds = parse_duration(value, f"{here}.half_life")
        if seconds < STEP:
            raise InvalidInput(f"{here}.half_life", "a half-life is at least 1 day")
        return float(seconds)
    if set(raw) != {"percent", "per"}:
        raise InvalidInput(here, "{half_life: 30 days} or {percent: 10, per: 30 days}")
    percent = raw["percent"]
    if not isinstance(percent, int | float) or isinstance(percent, bool) or not 0 < percent < 100:
        raise InvalidInput(f"{here}.percent", "a percentage lost per period, above 0 and below 100")
    per = parse_duration(raw["per"], f"{here}.per")
    half_life = per * math.log(0.5) / math.log(1 - percent / 100)
    if half_life < STEP:
        raise InvalidInput(here, "decays too fast: the half-life would be under 1 day")
    return half_life


def _cap(raw: Any, here: str) -> Cap:
    if not isinstance(raw, dict) or set(raw) != {"points", "per"}:
        raise InvalidInput(here, "a cap is {points: N, per: 30 days}")
    points = raw["points"]
    if not isinstance(points, int | float) or isinstance(points, bool) or not points > 0:
        raise InvalidInput(f"{here}.points", "a cap is a positive number of points")
    if isinstance(raw["per"], int | float) and not isinstance(raw["per"], bool):
        raise InvalidInput(f"{here}.per", "a window is a duration like '30 days', not zero")
    return Cap(float(points), parse_duration(raw["per"], f"{here}.per"))


def capped(points: float, cap: Cap | None, earned_in_window: float) -> float:
    """What a rule may still award: its points, cut to what the cap leaves in the window."""
    if cap is None or points <= 0:
        return points
    return max(0.0, min(points, cap.points - earned_in_window))


def crossed(old: float, new: float, thresholds: Iterable[float]) -> list[tuple[float, str]]:
    """The thresholds a change from `old` to `new` crosses (up: old < t <= new)."""
    out = []
    for t in sorted(set(thresholds)):
        if old < t <= new:
            out.append((t, "up"))
        elif new < t <= old:
            out.append((t, "down"))
    return out


def next_crossing(state: ScoreState, thresholds: Iterable[float], now: datetime) -> datetime | None:
    """The first moment after `now` at which decay alone takes the value across a threshold
    (strictly past it going down, onto or past it going up), or None. Decay moves a value
    towards `fixed`, never past it, and a day at a time: the answer is a day's start."""
    decay = state.decay
    if decay is None or state.norm == 0:
        return None
    current = state.value(now)
    moving = current - state.fixed  # > 0: falling towards fixed; < 0: rising towards it
    best: datetime | None = None
    for t in set(thresholds):
        falls_past = moving > 0 and state.fixed < t <= current
        rises_past = moving < 0 and current < t < state.fixed
        if not (falls_past or rises_past):
            continue
        # moving * 2 ** (-dt / h) == t - fixed  →  dt = h * log2(moving / (t - fixed))
        dt = decay.half_life * math.log2(moving / (t - state.fixed))
        days = max(
            math.ceil(((now - decay.epoch).total_seconds() + dt) / STEP), decay.days(now) + 1
        )
        for _ in range(3):  # rounding may leave the value on the threshold that day
            value = state.value(decay.day_start(days))
            if (value < t) if falls_past else (value >= t):
                break
            days += 1
        when = decay.day_start(days)
        best = when if best is None else min(best, when)
    return best


def thresholds(definitions: Iterable[Any]) -> dict[str, set[float]]:
    """The thresholds `score_crossed` triggers of these automation definitions watch, by score."""
    out: dict[str, set[float]] = {}
    for definition in definitions:
        if not isinstance(definition, dict):
            continue
        for trigger in definition.get("triggers") or []:
            spec = trigger.get("score_crossed") if isinstance(trigger, dict) else None
            if isinstance(spec, dict) and isinstance(spec.get("threshold"), int | float):
                name = spec.get("score", DEFAULT_SCORE)
                out.setdefault(str(name), set()).add(float(spec["threshold"]))
    return out


def compare(op: str, x: float, v: Any) -> bool:
    if op == "between":
        return bool(v[0] <= x <= v[1])
    return {
        "eq": x == v,
        "ne": x != v,
        "gt": x > v,
        "gte": x >= v,
        "lt": x < v,
        "lte": x <= v,
    }[op]


# --- scoring a batch of events -------------------------------------------------------------


@dataclass(frozen=True)
class Award:
    contact_id: int
    score: str
    rule: str
    event_id: int | None
    at: datetime
    points: float


@dataclass(frozen=True)
class Change:
    """A score moved: what becomes a `score.changed` event (old and new are values at `now`)."""

    contact_id: int
    score: str
    old: float
    new: float
    because: dict[str, Any]


@dataclass
class Kept:
    """One contact's score while a batch is scored, and whether it changed."""

    state: ScoreState
    checked_at: datetime
    touched: bool = False


class Scorer:
    """Scores a batch of events at `now`: the rules' points (within their caps), manual
    adjustments and field rules, and the crossings decay made since each score was last looked
    at. Pure: the shell loads the kept scores and the awards caps count, and writes the result.
    `emit=False` (a recompute) records no changes."""

    def __init__(
        self,
        model: ScoringModel,
        epoch: datetime,
        watched: dict[str, set[float]],
        now: datetime,
        *,
        emit: bool = True,
    ) -> None:
        self.model = model
        self.epoch = epoch
        self.watched = watched
        self.now = now
        self.emit = emit
        self.kept: dict[tuple[int, str], Kept] = {}
        self.earned: dict[tuple[int, str, str], list[tuple[datetime, float]]] = {}
        self.awards: list[Award] = []
        self.changes: list[Change] = []
        self._decays = {name: spec.decay(epoch) for name, spec in model.scores.items()}
        self._rules: dict[str, list[tuple[ScoreSpec, EventRule]]] = {}
        for spec in model.scores.values():
            for rule in spec.event_rules:
                self._rules.setdefault(rule.on.name, []).append((spec, rule))
        from conveyor.domain.automations.triggers import matches  # (it imports this module)

        self._matches = matches

    def load(
        self, contact_id: int, score: str, norm: float, fixed: float, checked: datetime
    ) -> None:
        if score in self.model.scores:
            state = ScoreState(norm, fixed, self._decays[score])
            self.kept[(contact_id, score)] = Kept(state, checked)

    def earned_before(self, contact_id: int, score: str, rule: str, at: datetime, p: float) -> None:
        """An award made earlier, which a cap counts."""
        self.earned.setdefault((contact_id, score, rule), []).append((at, p))

    def _kept(self, contact_id: int, score: str) -> Kept:
        found = self.kept.get((contact_id, score))
        if found is None:
            found = Kept(ScoreState(decay=self._decays[score]), self.now)
            self.kept[(contact_id, score)] = found
        return found

    def settle(self, contact_id: int, score: str) -> Kept:
        """Record the crossings decay made since the score was last looked at."""
        kept = self._kept(contact_id, score)
        if kept.checked_at < self.now:
            old, new = kept.state.value(kept.checked_at), kept.state.value(self.now)
            if self.emit and crossed(old, new, self.watched.get(score, ())):
                self.changes.append(Change(contact_id, score, old, new, {"reason": "decay"}))
            kept.checked_at = self.now
            kept.touched = True
        return kept

    def on_event(
        self,
        contact_id: int,
        event_id: int | None,
        name: str,
        properties: dict[str, Any],
        at: datetime,
    ) -> None:
        at = min(at, self.now)  # a point earned "in the future" (a skewed clock) counts from now
        for spec, rule in self._rules.get(name, ()):
            filtered = rule.on.where or rule.on.url_pattern is not None
            if filtered and not self._matches(rule.on, name, properties):
                continue
            points = rule.points
            if rule.cap is not None:
                # what was earned within a window of this moment, either side: events
                # may arrive out of timestamp order, and no window may exceed the cap
                span = timedelta(seconds=rule.cap.seconds)
                history = self.earned.setdefault((contact_id, spec.name, rule.id), [])
                near = sum(p for t, p in history if abs(t - at) < span)
                points = capped(points, rule.cap, near)
            if points == 0:
                continue
            if rule.cap is not None:
                history.append((at, points))
            self._award(contact_id, spec.name, rule.id, event_id, at, points)

    def adjust(
        self, contact_id: int, score: str, by: float, at: datetime, event_id: int | None
    ) -> None:
        """Points given by hand or by an automation (`adjust_score` with a score name)."""
        if score in self.model.scores and by:
            self._award(contact_id, score, "adjust_score", event_id, min(at, self.now), by)

    def _award(
        self, contact_id: int, score: str, rule: str, event_id: int | None, at: datetime, p: float
    ) -> None:
        kept = self.settle(contact_id, score)
        old = kept.state.value(self.now)
        kept.state.add(p, at)
        kept.touched = True
        self.awards.append(Award(contact_id, score, rule, event_id, at, p))
        if self.emit:
            new = kept.state.value(self.now)
            because = {"rule": rule, "points": p}
            if event_id is not None:
                because["event"] = event_id
            self.changes.append(Change(contact_id, score, old, new, because))

    def set_fixed(self, contact_id: int, score: str, fixed: float) -> None:
        """The points of the field rules that hold for the contact now."""
        kept = self._kept(contact_id, score) if fixed else self.kept.get((contact_id, score))
        if kept is None or kept.state.fixed == fixed:
            return
        kept = self.settle(contact_id, score)
        old = kept.state.value(self.now)
        kept.state.fixed = fixed
        kept.touched = True
        if self.emit:
            new = kept.state.value(self.now)
            self.changes.append(Change(contact_id, score, old, new, {"rule": "fields"}))

    def rows(self) -> list[tuple[int, str, ScoreState, datetime, datetime | None]]:
        """Every touched score: (contact, score, state, checked_at, when decay next crosses)."""
        return [
            (
                cid,
                score,
                kept.state,
                kept.checked_at,
                next_crossing(kept.state, self.watched.get(score, ()), self.now),
            )
            for (cid, score), kept in self.kept.items()
            if kept.touched
        ]
