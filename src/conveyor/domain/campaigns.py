"""Campaigns (newsletters), pure: the definition as written (YAML/JSON) checked field by field,
the lifecycle's allowed moves, when a schedule starts, each timezone's send instant for a
local-time send, and the throttle's hourly slots. No I/O, no clock: `now` is handed in.

Local time (like Mailchimp's Timewarp): the campaign starts — its audience is frozen and its
messages queued — when the first timezone on Earth (UTC+14) reaches the local time; each contact
then gets it at that local time on that date in their own timezone (the workspace's when they
have none or an unknown one). A contact whose local time has already passed when the campaign
starts (scheduled late, or the worker was down) gets it at that local time the next day
(`late: next_day`, the default: the promise "09:00 in your morning" is kept) or at once
(`late: now`); the campaign's report says how many and which.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.conditions import parse_duration
from conveyor.domain.errors import FieldError, InvalidInput
from conveyor.domain.experiments import ArmCounts, Rules, decide

CHANNELS = ("email", "sms")
LATE = ("next_day", "now")
# A contact the send policy's caps hold back: skipped by default, like Klaviyo's Smart Sending
# (a newsletter a day late is stale), or deferred to when the caps allow.
ON_CAP = ("skip", "defer")
STATUSES = ("draft", "scheduled", "sending", "paused", "sent", "cancelled")
EARLIEST_OFFSET = timedelta(hours=14)  # UTC+14 (Kiribati): where a local time comes first
_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
MAX_PER_HOUR = 10_000_000

# Which statuses each move starts from.
MOVES: dict[str, tuple[str, ...]] = {
    "edit": ("draft",),
    "schedule": ("draft",),
    "unschedule": ("scheduled",),
    "start": ("scheduled",),
    "pause": ("sending",),
    "resume": ("paused",),
    "cancel": ("draft", "scheduled", "sending", "paused"),
    "finish": ("sending",),
}


@dataclass(frozen=True)
class Audience:
    lists: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_lists: tuple[str, ...] = ()
    exclude_segments: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    condition: dict[str, Any] | None = None  # a condition the contacts must also meet

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: list(getattr(self, k)) for k in ("lists", "segments", "tags") if getattr(self, k)
        }
        if self.condition is not None:
            out["condition"] = self.condition
        exclude = {
            k: list(getattr(self, f"exclude_{k}"))
            for k in ("lists", "segments", "tags")
            if getattr(self, f"exclude_{k}")
        }
        if exclude:
            out["exclude"] = exclude
        return out


@dataclass(frozen=True)
class Schedule:
    """Either a moment (`at`) or a local time on a date in each contact's timezone."""

    at: datetime | None = None
    date: date | None = None
    local_time: time | None = None
    late: str = "next_day"

    @property
    def local(self) -> bool:
        return self.date is not None

    def as_dict(self) -> dict[str, Any]:
        if self.at is not None:
            return {"at": self.at.isoformat()}
        assert self.date is not None and self.local_time is not None
        return {
            "date": self.date.isoformat(),
            "local_time": self.local_time.strftime("%H:%M"),
            "late": self.late,
        }


@dataclass(frozen=True)
class AbTest:
    """A/B test on a sample (Mailchimp style): each variant (a template) goes to an equal share
    of `sample` percent of the audience; after `wait` the winner by `metric` goes to the rest."""

    variants: tuple[str, ...]
    sample: int  # percent of the audience
    wait: int  # seconds after the start
    metric: str = "clicked"  # clicked | converted
    event: str = "order_completed"  # what `converted` counts

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "variants": list(self.variants),
            "sample": self.sample,
            "wait": self.wait,
            "metric": self.metric,
        }
        if self.metric == "converted":
            out["event"] = self.event
        return out


AB_KEYS = ("variants", "sample", "wait", "metric", "event")


def parse_ab_test(raw: Any, where: str = "ab_test") -> AbTest:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "an object: {variants, sample, wait, metric}")
    extra = sorted(set(raw) - set(AB_KEYS))
    if extra:
        raise InvalidInput(f"{where}.{extra[0]}", f"an A/B test takes {', '.join(AB_KEYS)}")
    variants = raw.get("variants")
    if (
        not isinstance(variants, list)
        or not 2 <= len(variants) <= 5
        or not all(isinstance(v, str) and 0 < len(v) <= 64 for v in variants)
        or len(set(variants)) != len(variants)
    ):
        raise InvalidInput(f"{where}.variants", "2 to 5 different template keys")
    sample = raw.get("sample", 20)
    if type(sample) is not int or not 2 <= sample <= 50:
        raise InvalidInput(f"{where}.sample", "a percentage of the audience, 2-50")
    wait = raw.get("wait", "4 hours")
    if type(wait) is not int:  # seconds as stored, else "4 hours" as written
        wait = parse_duration(wait, f"{where}.wait")
    if not 600 <= wait <= 30 * 86400:
        raise InvalidInput(f"{where}.wait", "from 10 minutes to 30 days")
    metric = raw.get("metric", "clicked")
    if metric not in ("clicked", "converted"):
        raise InvalidInput(f"{where}.metric", "clicked or converted")
    event = raw.get("event", "order_completed")
    if metric != "converted" and "event" in raw:
        raise InvalidInput(f"{where}.event", "goes with metric: converted")
    if not isinstance(event, str) or not 0 < len(event) <= 200:
        raise InvalidInput(f"{where}.event", "the name of the event that counts as converted")
    return AbTest(tuple(variants), sample, wait, str(metric), event)


@dataclass(frozen=True)
class CampaignSpec:
    key: str
    name: str
    channel: str
    template: str
    audience: Audience
    schedule: Schedule | None = None
    throttle_per_hour: int | None = None
    on_cap: str = "skip"
    ab_test: AbTest | None = None


def _names(raw: Any, where: str, errors: list[FieldError]) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) and x for x in raw):
        errors.append(FieldError(where, "must be a list of names"))
        return ()
    return tuple(dict.fromkeys(raw))


def parse_audience(raw: Any, where: str = "audience") -> Audience:
    errors: list[FieldError] = []
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be an object with lists, segments or tags")
    unknown = set(raw) - {"lists", "segments", "tags", "exclude", "condition"}
    if unknown:
        errors.append(FieldError(f"{where}.{sorted(unknown)[0]}", "unknown audience part"))
    exclude = raw.get("exclude") or {}
    if not isinstance(exclude, dict):
        errors.append(FieldError(f"{where}.exclude", "must be an object"))
        exclude = {}
    elif set(exclude) - {"lists", "segments", "tags"}:
        bad = sorted(set(exclude) - {"lists", "segments", "tags"})[0]
        errors.append(FieldError(f"{where}.exclude.{bad}", "unknown audience part"))
    audience = Audience(
        lists=_names(raw.get("lists"), f"{where}.lists", errors),
        segments=_names(raw.get("segments"), f"{where}.segments", errors),
        tags=_names(raw.get("tags"), f"{where}.tags", errors),
        exclude_lists=_names(exclude.get("lists"), f"{where}.exclude.lists", errors),
        exclude_segments=_names(exclude.get("segments"), f"{where}.exclude.segments", errors),
        exclude_tags=_names(exclude.get("tags"), f"{where}.exclude.tags", errors),
        condition=raw.get("condition"),
    )
    if audience.condition is not None and not isinstance(audience.condition, dict):
        errors.append(FieldError(f"{where}.condition", "a condition object (as in segments)"))
    if not errors and not (
        audience.lists or audience.segments or audience.tags or audience.condition
    ):
        errors.append(FieldError(where, "name at least one list, segment, tag or a condition"))
    if errors:
        raise InvalidInput.many(errors)
    return audience


def parse_schedule(raw: Any, where: str = "schedule") -> Schedule:
    if not isinstance(raw, dict):
        raise InvalidInput(where, "must be an object: {at} or {date, local_time}")
    unknown = set(raw) - {"at", "date", "local_time", "late"}
    if unknown:
        raise InvalidInput(f"{where}.{sorted(unknown)[0]}", "unknown schedule setting")
    if "at" in raw:
        if set(raw) - {"at"}:
            raise InvalidInput(where, "give either 'at' or 'date' with 'local_time', not both")
        value = raw["at"]
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise InvalidInput(f"{where}.at", "not an ISO 8601 date-time") from None
        if not isinstance(value, datetime):
            raise InvalidInput(f"{where}.at", "not an ISO 8601 date-time")
        if value.tzinfo is None:
            raise InvalidInput(f"{where}.at", "give a UTC offset (e.g. 2026-03-03T09:00:00Z)")
        return Schedule(at=value.astimezone(UTC))
    day = raw.get("date")
    if isinstance(day, str):
        try:
            day = date.fromisoformat(day)
        except ValueError:
            raise InvalidInput(f"{where}.date", "not a date (YYYY-MM-DD)") from None
    if not isinstance(day, date) or isinstance(day, datetime):
        raise InvalidInput(f"{where}.date", "a date (YYYY-MM-DD) is required with local_time")
    clock = raw.get("local_time")
    found = _TIME.match(clock) if isinstance(clock, str) else None
    if found is None:
        raise InvalidInput(f"{where}.local_time", "a local time HH:MM is required (e.g. 09:00)")
    late = raw.get("late", "next_day")
    if late not in LATE:
        raise InvalidInput(f"{where}.late", f"one of {', '.join(LATE)}")
    return Schedule(
        date=day, local_time=time(int(found.group(1)), int(found.group(2))), late=str(late)
    )


def parse_campaign(raw: Any) -> CampaignSpec:
    """A campaign definition as written, checked; every wrong field named at once."""
    if not isinstance(raw, dict):
        raise InvalidInput("campaign", "must be an object")
    errors: list[FieldError] = []
    known = {"key", "name", "channel", "template", "audience", "schedule", "throttle", "on_cap"}
    known.add("ab_test")
    for extra in sorted(set(raw) - known):
        errors.append(FieldError(extra, "unknown campaign setting"))
    key = raw.get("key")
    if not isinstance(key, str) or not _KEY.match(key):
        errors.append(FieldError("key", "1-64 of a-z, 0-9, '-' and '_'"))
    name = raw.get("name", key)
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        errors.append(FieldError("name", "a name of 1-255 characters"))
    channel = raw.get("channel", "email")
    if channel not in CHANNELS:
        errors.append(FieldError("channel", f"one of {', '.join(CHANNELS)}"))
    ab_test = None
    if raw.get("ab_test") is not None:
        try:
            ab_test = parse_ab_test(raw["ab_test"])
        except InvalidInput as exc:
            errors += exc.errors
    template = raw.get("template", ab_test.variants[0] if ab_test else None)
    if ab_test is not None and template not in ab_test.variants:
        errors.append(FieldError("template", "with an A/B test: one of its variants, or none"))
    if not isinstance(template, str) or not template or len(template) > 64:
        errors.append(FieldError("template", "the key of a template of the workspace"))
    audience = Audience()
    try:
        audience = parse_audience(raw.get("audience"))
    except InvalidInput as exc:
        errors += exc.errors
    schedule = None
    if raw.get("schedule") is not None:
        try:
            schedule = parse_schedule(raw["schedule"])
        except InvalidInput as exc:
            errors += exc.errors
    per_hour = None
    throttle = raw.get("throttle")
    if throttle is not None:
        value = throttle.get("per_hour") if isinstance(throttle, dict) else None
        if isinstance(throttle, dict) and set(throttle) - {"per_hour"}:
            errors.append(FieldError("throttle", "only per_hour"))
        elif type(value) is not int or not 1 <= value <= MAX_PER_HOUR:
            errors.append(FieldError("throttle.per_hour", f"a whole number 1-{MAX_PER_HOUR}"))
        else:
            per_hour = value
    on_cap = raw.get("on_cap", "skip")
    if on_cap not in ON_CAP:
        errors.append(FieldError("on_cap", f"one of {', '.join(ON_CAP)}"))
    if per_hour is not None and schedule is not None and schedule.local:
        # Mailchimp refuses the same pair: a throttle spreads one send over hours, a local-time
        # send is one send per timezone hour; together neither promise would hold.
        errors.append(FieldError("throttle", "a local-time schedule cannot be throttled"))
    if ab_test is not None and (per_hour is not None or (schedule and schedule.local)):
        # The sample's results must be comparable and come in one wait: not spread over
        # timezones' hours or throttle slots.
        errors.append(FieldError("ab_test", "cannot be combined with a local time or a throttle"))
    if errors:
        raise InvalidInput.many(errors)
    return CampaignSpec(
        key=str(key),
        name=str(name).strip(),
        channel=str(channel),
        template=str(template),
        audience=audience,
        schedule=schedule,
        throttle_per_hour=per_hour,
        on_cap=str(on_cap),
        ab_test=ab_test,
    )


def check_move(status: str, move: str) -> str | None:
    """Why `move` is not allowed from `status` (None: it is)."""
    allowed = MOVES[move]
    if status in allowed:
        return None
    return f"the campaign is {status}; {move} needs it {' or '.join(allowed)}"


def starts_at(schedule: Schedule, now: datetime) -> datetime:
    """When the worker freezes the audience and queues: the moment (never before now), or for
    a local time, when UTC+14 reaches it."""
    if schedule.at is not None:
        return max(schedule.at, now)
    assert schedule.date is not None and schedule.local_time is not None
    naive = datetime.combine(schedule.date, schedule.local_time)
    return max((naive - EARLIEST_OFFSET).replace(tzinfo=UTC), now)


def zone_or(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (KeyError, ValueError):
            continue
    return ZoneInfo("UTC")


@dataclass(frozen=True)
class LocalPlan:
    """Each timezone's send instant, the fallback's, and the zones whose time had passed."""

    by_zone: dict[str, datetime]
    fallback: datetime
    late: list[str]


def local_plan(
    schedule: Schedule, zones: list[str | None], fallback_zone: str, now: datetime
) -> LocalPlan:
    """When each timezone gets a local-time campaign that starts at `now`."""
    assert schedule.date is not None and schedule.local_time is not None
    day, clock = schedule.date, schedule.local_time

    def instant(zone: ZoneInfo) -> tuple[datetime, bool]:
        at = datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)
        if at >= now:
            return at, False
        if schedule.late == "now":
            return now, True
        following = day + timedelta(days=1)
        while (at := datetime.combine(following, clock, tzinfo=zone).astimezone(UTC)) < now:
            following += timedelta(days=1)
        return at, True

    fallback = zone_or(fallback_zone, "UTC")
    default, default_late = instant(fallback)
    late = [str(fallback)] if default_late else []
    by_zone: dict[str, datetime] = {}
    for name in zones:
        if not name:
            continue
        zone = zone_or(name, fallback_zone)
        at, was_late = instant(zone)
        by_zone[name] = at
        if was_late and name not in late:
            late.append(name)
    return LocalPlan(by_zone, default, sorted(late))


def throttle_slots(count: int, per_hour: int, start: datetime) -> list[tuple[int, int, datetime]]:
    """Recipients 1..count in slots of `per_hour`: (first seq, last seq, due) an hour apart."""
    return [
        (lo, min(lo + per_hour - 1, count), start + timedelta(hours=i))
        for i, lo in enumerate(range(1, count + 1, per_hour))
    ]


def sample_slot(seq: int) -> int:
    """Where recipient `seq` falls in every hundred (0-99): below `sample` it is in the A/B
    sample, and its variant is the slot modulo the number of variants. 37 is coprime with 100,
    so each run of 100 recipients by contact id gives each slot once (a systematic sample)."""
    return (seq * 37) % 100


@dataclass(frozen=True)
class AbOutcome:
    winner: str
    note: str  # what the campaign's report says about it
    decision: dict[str, Any]  # the split-test decision, as stored


def ab_winner(
    test: AbTest, arms: list[ArmCounts], started_at: datetime, now: datetime
) -> AbOutcome:
    """The variant the rest of the audience gets once the wait is over: the split-test decision
    (domain.experiments: an always-valid sequential test) when it finds a significant winner,
    else the best by the metric, saying so; a variant whose unsubscribes or complaints are
    significantly worse never wins."""
    rules = Rules(min_sample=1, max_duration=timedelta(seconds=test.wait), fallback="best")
    decision = decide(arms, rules, started_at, now)
    metric = "click rate" if test.metric == "clicked" else f"{test.event} rate"
    rates = ", ".join(f"{a.name} {a.converted}/{a.entered}" for a in arms)
    if decision.winner is not None and decision.rule == "significant":
        note = f"A/B: {decision.winner} won on {metric}, a significant difference ({rates})"
        return AbOutcome(decision.winner, note, decision.as_dict())
    if decision.winner is not None:
        note = (
            f"A/B: no significant winner after the wait; {decision.winner} had the best "
            f"{metric} and was sent to the rest ({rates})"
        )
        return AbOutcome(decision.winner, note, decision.as_dict())
    first = test.variants[0]
    note = f"A/B: every variant was blocked by its unsubscribes or complaints; {first} was sent"
    return AbOutcome(first, note, decision.as_dict())
