"""The sales side's pure rules: roles, pipelines and their stages, deal values, moves between
stages, round-robin assignment and the forecast. No I/O: the CRM service is their shell."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from conveyor.domain.errors import InvalidInput

ROLES = ("owner", "admin", "marketer", "sales", "viewer")
TASK_TYPES = ("call", "email", "meeting", "todo")
STATUSES = ("open", "won", "lost")
KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_MINOR = 10**15  # ten trillion in a currency's major unit: far beyond any deal, inside BIGINT
MAX_STAGES = 50


@dataclass(frozen=True)
class Stage:
    name: str
    probability: int  # % chance of winning a deal in this stage


@dataclass(frozen=True)
class Pipeline:
    key: str
    name: str
    stages: tuple[Stage, ...]

    def stage(self, name: str, field: str = "stage") -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        names = ", ".join(s.name for s in self.stages)
        raise InvalidInput(field, f"no stage '{name}' in pipeline '{self.key}'; it has {names}")

    def position(self, name: str) -> int:
        return [s.name for s in self.stages].index(name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "stages": [{"name": s.name, "probability": s.probability} for s in self.stages],
        }


def parse_pipeline(raw: Any, path: str = "") -> Pipeline:
    """A pipeline from YAML/JSON: {key, name?, stages: [{name, probability}] or [names]}."""

    def at(name: str) -> str:
        return f"{path}.{name}" if path else name

    if not isinstance(raw, dict):
        raise InvalidInput(path, "a pipeline is a mapping with key, name and stages")
    extra = sorted(set(raw) - {"key", "name", "stages"})
    if extra:
        raise InvalidInput(at(extra[0]), "a pipeline has key, name and stages")
    key = raw.get("key")
    if not isinstance(key, str) or not KEY.match(key):
        raise InvalidInput(at("key"), "1-64 of a-z, 0-9, - and _")
    name = raw.get("name") or key
    if not isinstance(name, str) or len(name) > 255:
        raise InvalidInput(at("name"), "text of at most 255 characters")
    stages_raw = raw.get("stages")
    if not isinstance(stages_raw, list) or not 1 <= len(stages_raw) <= MAX_STAGES:
        raise InvalidInput(at("stages"), f"a list of 1 to {MAX_STAGES} stages, in order")
    stages: list[Stage] = []
    for i, item in enumerate(stages_raw):
        here = at(f"stages.{i}")
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or set(item) - {"name", "probability"}:
            raise InvalidInput(here, "a stage is {name, probability}")
        stage_name = item.get("name")
        if not isinstance(stage_name, str) or not stage_name.strip() or len(stage_name) > 64:
            raise InvalidInput(f"{here}.name", "1-64 characters")
        probability = item.get("probability", 0)
        if (
            not isinstance(probability, int)
            or isinstance(probability, bool)
            or not 0 <= probability <= 100
        ):
            raise InvalidInput(f"{here}.probability", "a whole percentage from 0 to 100")
        if any(s.name == stage_name for s in stages):
            raise InvalidInput(f"{here}.name", f"stage '{stage_name}' is listed twice")
        stages.append(Stage(stage_name, probability))
    return Pipeline(key, name, tuple(stages))


def to_minor(value: Any, field: str = "value") -> int:
    """A deal value (a number of the currency's major unit) in minor units (cents)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidInput(field, "a number, like 1500 or 1499.99")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(field, "a finite number")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidInput(field, "a number, like 1500 or 1499.99") from None
    if not amount.is_finite():
        raise InvalidInput(field, "a finite number")
    if amount < 0:
        raise InvalidInput(field, "a deal value cannot be negative")
    minor = int((amount * 100).to_integral_value())
    if minor >= MAX_MINOR:
        raise InvalidInput(field, "too large")
    return minor


def from_minor(minor: int) -> int | float:
    """Minor units back to a number: whole amounts as integers."""
    return minor // 100 if minor % 100 == 0 else minor / 100


def check_currency(value: Any, field: str = "currency") -> str:
    if not isinstance(value, str) or not CURRENCY.match(value.upper()):
        raise InvalidInput(field, "a three-letter ISO 4217 code, like EUR")
    return value.upper()


def check_close_date(value: Any, field: str = "expected_close") -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise InvalidInput(field, "a date like 2026-12-31") from None


def check_status(status: Any, lost_reason: Any, field: str = "status") -> str:
    if status not in STATUSES:
        raise InvalidInput(field, f"one of {', '.join(STATUSES)}")
    if lost_reason is not None and status != "lost":
        raise InvalidInput("lost_reason", "only a lost deal has a lost reason")
    return str(status)


def check_moves(pipeline: Pipeline, moves: list[str], field: str = "stage") -> None:
    """Several stage moves of one deal in one step must not return to a stage they left: a
    cycle (A → B → A) says two nodes disagree, and its events would be noise."""
    seen: list[str] = []
    for i, stage in enumerate(moves):
        pipeline.stage(stage, field)
        if stage in seen and seen[-1] != stage:
            raise InvalidInput(
                field, f"moving to '{stage}' again after {' → '.join(moves[: i + 1])}: a cycle"
            )
        seen.append(stage)


def next_member(candidates: list[int], last: int | None) -> int:
    """Round robin: the member after `last` in id order, wrapping around."""
    ordered = sorted(candidates)
    for member_id in ordered:
        if last is None or member_id > last:
            return member_id
    return ordered[0]


@dataclass(frozen=True)
class ForecastDeal:
    pipeline: str
    stage: str
    owner: str | None
    month: str | None  # YYYY-MM of the expected close
    currency: str
    value_minor: int
    probability: int


def forecast(deals: Iterable[ForecastDeal]) -> dict[str, list[dict[str, Any]]]:
    """Open value and probability-weighted value of open deals, per pipeline, stage, owner and
    month of expected close (each per currency: sums across currencies mean nothing)."""
    deals = list(deals)
    out: dict[str, list[dict[str, Any]]] = {}
    for by in ("pipeline", "stage", "owner", "month"):
        groups: dict[tuple[Any, ...], list[int]] = {}
        for deal in deals:
            key = ((deal.pipeline, deal.stage) if by == "stage" else (getattr(deal, by),)) + (
                deal.currency,
            )
            totals = groups.setdefault(key, [0, 0, 0])
            totals[0] += 1
            totals[1] += deal.value_minor
            totals[2] += deal.value_minor * deal.probability  # in hundredths of a minor unit
        rows = []
        for key, (count, value, weighted) in sorted(groups.items(), key=lambda kv: str(kv[0])):
            row: dict[str, Any] = (
                {"pipeline": key[0], "stage": key[1]} if by == "stage" else {by: key[0]}
            )
            row |= {
                "currency": key[-1],
                "deals": count,
                "open_value": from_minor(value),
                "weighted_value": from_minor(round(weighted / 100)),
            }
            rows.append(row)
        out[by] = rows
    return out
