"""Send policies: whether a message goes now, later (deferred to the earliest moment every rule
allows) or not at all (skipped by an explicit rule), and why, in words for the timeline.

Pure: the caller hands in the policy, the contact's recent sends and `now`. Rules:
- frequency caps per channel over rolling windows ("email: 1 per 16 hours, 3 per 7 days"),
  counting marketing messages sent (or being sent) to the contact;
- send windows per channel in the contact's timezone (the workspace's when it has none):
  allowed weekdays and hours — quiet hours are the rest;
- a marketing template is not sent to the same contact twice within a period, unless the
  node allows it;
- a node may ask to send at a local time of day.
Transactional messages pass caps, windows and repeats (suppression is decided before this).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.conditions import parse_duration
from conveyor.domain.errors import InvalidInput

CHANNELS = ("email", "sms", "site_message", "team", "webhook")
CAPPED = ("email", "sms", "site_message")  # people's inboxes; team mail and webhooks are not
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Cap:
    max: int
    seconds: int

    def describe(self, channel: str) -> str:
        return f"{channel} cap {self.max} per {human(self.seconds)}"


@dataclass(frozen=True)
class Window:
    """When messages of a channel may go: from `start` to `end` local time (end exclusive;
    `end` before `start` spans midnight), on `weekdays` (0 = Monday)."""

    start: time
    end: time
    weekdays: frozenset[int] = frozenset(range(7))

    def allows(self, local: datetime) -> bool:
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            return local.weekday() in self.weekdays and self.start <= clock < self.end
        # Overnight (22:00-06:00): the part after midnight belongs to the day it started.
        if clock >= self.start:
            return local.weekday() in self.weekdays
        if clock < self.end:
            return (local.weekday() - 1) % 7 in self.weekdays
        return False

    def describe(self) -> str:
        days = (
            ""
            if len(self.weekdays) == 7
            else " on " + ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        )
        return f"{self.start:%H:%M}-{self.end:%H:%M}{days}"


@dataclass(frozen=True)
class Policy:
    caps: dict[str, tuple[Cap, ...]] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    repeat_within: int | None = None  # seconds; None: a template may repeat any time

    def as_dict(self) -> dict[str, Any]:
        return {
            "caps": {
                ch: [{"max": c.max, "per": human(c.seconds)} for c in caps]
                for ch, caps in self.caps.items()
            },
            "windows": {
                ch: {
                    "from": f"{w.start:%H:%M}",
                    "to": f"{w.end:%H:%M}",
                    "weekdays": [WEEKDAYS[d] for d in sorted(w.weekdays)],
                }
                for ch, w in self.windows.items()
            },
            "repeat_within": human(self.repeat_within) if self.repeat_within else None,
        }


@dataclass(frozen=True)
class Sent:
    """A marketing message the contact got (or is being sent right now)."""

    channel: str
    template: str | None
    at: datetime


@dataclass(frozen=True)
class Outgoing:
    channel: str
    template: str | None
    message_class: str  # marketing | transactional
    on_cap: str = "defer"  # defer | skip
    allow_repeat: bool = False
    send_at: str | None = None  # "09:00": at that local time of day
    created_at: datetime | None = None


@dataclass(frozen=True)
class Decision:
    action: str  # send | defer | skip
    until: datetime | None = None
    reason: str = ""


# --- deciding -----------------------------------------------------------------------------------


def decide(
    message: Outgoing, history: list[Sent], policy: Policy, now: datetime, timezone: str
) -> Decision:
    if message.message_class == "transactional":
        return Decision("send", reason="transactional: no caps or quiet hours")
    zone = ZoneInfo(timezone)
    if message.template and policy.repeat_within and not message.allow_repeat:
        since = now - timedelta(seconds=policy.repeat_within)
        earlier = [s for s in history if s.template == message.template and s.at > since]
        if earlier:
            last = max(s.at for s in earlier)
            return Decision(
                "skip",
                reason=f"skipped: template {message.template} was sent "
                f"{_local(last, zone)} (not twice within {human(policy.repeat_within)})",
            )
    moment, why = now, []
    if message.send_at and message.created_at is not None:
        target = next_local(message.created_at, message.send_at, zone)
        if target > moment:
            moment = target
            why.append(f"send at {message.send_at} {timezone}")
    caps = policy.caps.get(message.channel, ())
    window = policy.windows.get(message.channel)
    capped_by: list[str] = []
    for _ in range(64):  # caps and windows push each other forward; this settles fast
        moved = False
        for cap in caps:
            earliest = _cap_allows(cap, message.channel, history, moment)
            if earliest > moment:
                moment, moved = earliest, True
                if cap.describe(message.channel) not in capped_by:
                    capped_by.append(cap.describe(message.channel))
        if window is not None:
            opening = next_opening(window, moment, zone)
            if opening > moment:
                moment, moved = opening, True
                note = f"quiet hours until {opening.astimezone(zone):%H:%M} {timezone}"
                why = [w for w in why if not w.startswith("quiet hours")] + [note]
        if not moved:
            break
    if moment <= now:
        return Decision("send", reason="within the policy")
    if capped_by and message.on_cap == "skip":
        return Decision("skip", reason=f"skipped: {'; '.join(capped_by)} (the node skips on cap)")
    detail = "; ".join(capped_by + [f"next allowed {_local(moment, zone)}"])
    if why:
        detail += f" ({'; '.join(why)})"
    return Decision("defer", until=moment, reason=f"deferred: {detail}")


def _cap_allows(cap: Cap, channel: str, history: list[Sent], moment: datetime) -> datetime:
    """The earliest time ≥ moment at which fewer than `cap.max` sends lie in the window."""
    window = timedelta(seconds=cap.seconds)
    recent = sorted(s.at for s in history if s.channel == channel and s.at > moment - window)
    if len(recent) < cap.max:
        return moment
    # The oldest sends must leave the window until only max - 1 remain in it.
    return recent[len(recent) - cap.max] + window


def next_opening(window: Window, moment: datetime, zone: ZoneInfo) -> datetime:
    """`moment` if the window is open then, else when it next opens (DST-aware: the opening
    is a local wall-clock time, converted on the day it happens)."""
    local = moment.astimezone(zone)
    if window.allows(local):
        return moment
    for days in range(8):
        day = local.date() + timedelta(days=days)
        if day.weekday() not in window.weekdays:
            continue
        opening = _at(day, window.start, zone)
        if opening > moment:
            return opening
    raise AssertionError("a window with weekdays opens within a week")


def next_local(after: datetime, hhmm: str, zone: ZoneInfo) -> datetime:
    """The next moment (at or after `after`) that is `hhmm` on the contact's clock."""
    at = time.fromisoformat(hhmm)
    local = after.astimezone(zone)
    for days in range(3):
        candidate = _at(local.date() + timedelta(days=days), at, zone)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable")


def _at(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as UTC. In a spring-forward gap (02:30 that never happens) it is
    the moment the clocks jump to; in a fall-back repeat, the first of the two."""
    naive = datetime.combine(day, at)
    local = naive.replace(tzinfo=zone)
    back = local.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != naive:  # did not exist: take the first valid minute after the gap
        local = (naive + timedelta(hours=1)).replace(tzinfo=zone)
    return local.astimezone(UTC)


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat(timespec="minutes")


def human(seconds: int | None) -> str:
    if not seconds:
        return "0 seconds"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


# --- parsing ------------------------------------------------------------------------------------


def parse_policy(raw: Any, path: str = "send_policy") -> Policy:
    """`{caps: {email: [{max: 1, per: 16 hours}]}, windows: {sms: {from: "08:00", to: "21:00",
    weekdays: [mon, …]}}, repeat_within: 30 days}`; errors name the field."""
    if raw is None:
        return Policy()
    if not isinstance(raw, dict):
        raise InvalidInput(path, "a mapping with caps, windows and repeat_within")
    extra = sorted(set(raw) - {"caps", "windows", "repeat_within"})
    if extra:
        raise InvalidInput(f"{path}.{extra[0]}", "a send policy has caps, windows, repeat_within")
    for part in ("caps", "windows"):
        if not isinstance(raw.get(part) or {}, dict):
            raise InvalidInput(f"{path}.{part}", "a mapping by channel (email, sms)")
    caps: dict[str, tuple[Cap, ...]] = {}
    for channel, rules in (raw.get("caps") or {}).items():
        here = f"{path}.caps.{channel}"
        if channel not in CAPPED:
            raise InvalidInput(here, f"caps apply to {', '.join(CAPPED)}")
        if not isinstance(rules, list):
            raise InvalidInput(here, "a list of {max: N, per: DURATION}")
        parsed = []
        for i, rule in enumerate(rules):
            if not isinstance(rule, dict) or set(rule) != {"max", "per"}:
                raise InvalidInput(f"{here}.{i}", "{max: N, per: DURATION}")
            n = rule["max"]
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise InvalidInput(f"{here}.{i}.max", "a whole number >= 1")
            parsed.append(Cap(n, parse_duration(rule["per"], f"{here}.{i}.per")))
        caps[channel] = tuple(parsed)
    windows: dict[str, Window] = {}
    for channel, spec in (raw.get("windows") or {}).items():
        here = f"{path}.windows.{channel}"
        if channel not in CAPPED:
            raise InvalidInput(here, f"windows apply to {', '.join(CAPPED)}")
        if not isinstance(spec, dict) or set(spec) - {"from", "to", "weekdays"}:
            raise InvalidInput(here, "{from: '08:00', to: '21:00', weekdays: [mon, …]}")
        ends = []
        for key in ("from", "to"):
            value = spec.get(key)
            if not isinstance(value, str) or not _HHMM.match(value):
                raise InvalidInput(f"{here}.{key}", "a time of day like 08:00")
            ends.append(time.fromisoformat(value))
        if ends[0] == ends[1]:
            raise InvalidInput(f"{here}.to", "a window needs a length")
        days = spec.get("weekdays", list(WEEKDAYS))
        if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
            raise InvalidInput(f"{here}.weekdays", f"a list of {', '.join(WEEKDAYS)}")
        windows[channel] = Window(ends[0], ends[1], frozenset(WEEKDAYS.index(d) for d in days))
    repeat = raw.get("repeat_within")
    repeat_seconds = (
        parse_duration(repeat, f"{path}.repeat_within") if repeat not in (None, "") else None
    )
    return Policy(caps, windows, repeat_seconds)


def merge(base: dict[str, Any] | None, override: dict[str, Any] | None) -> dict[str, Any]:
    """A contact's override on top of the workspace's policy, channel by channel."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (base or {}).items()}
    for key, value in (override or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
