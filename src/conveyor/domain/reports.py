"""The pure rules of reports: which opens and clicks a machine made, which message a conversion
is attributed to, how a revenue is read, the rates, and how days fold into weeks and months."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

from conveyor.domain.errors import InvalidInput
from conveyor.domain.tracking import mail_proxy

# --- machine opens and clicks -----------------------------------------------------------------

# No person opens an email within a second of it leaving, nor clicks within ten: what does is a
# receiving server's prefetch or a link scanner (Barracuda, Mimecast, Defender Safe Links…).
OPEN_TOO_FAST = 1.0
CLICK_TOO_FAST = 10.0
# Lowercased pieces of the user agents of scanners, scripts and crawlers. Real mail clients
# and browsers carry none of them.
SCANNER_AGENTS = (
    "bot",
    "crawler",
    "spider",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "httpx",
    "curl/",
    "wget",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "headlesschrome",
    "phantomjs",
    "barracuda",
    "mimecast",
    "proofpoint",
    "symantec",
    "trendmicro",
    "forcepoint",
    "sophos",
    "fortinet",
    "cisco",
    "safelinks",
)
# Microsoft's Defender scans from its own cloud: 40.94.0.0/16 is where Safe Links calls from.
SCANNER_NETWORKS = (ipaddress.ip_network("40.94.0.0/16"),)


def _scanner(ip: str | None, user_agent: str | None) -> str | None:
    agent = (user_agent or "").strip().lower()
    if not agent:
        return "no_user_agent"
    if any(piece in agent for piece in SCANNER_AGENTS):
        return "scanner_agent"
    try:
        address = ipaddress.ip_address(ip) if ip else None
    except ValueError:
        address = None
    if address is not None and any(address in net for net in SCANNER_NETWORKS):
        return "scanner_network"
    return None


def machine_open(ip: str | None, user_agent: str | None, seconds: float | None) -> str | None:
    """Why an open was a machine's ("proxy_apple", "scanner_agent", "too_fast", …), or None
    for a person's. `seconds`: since the message was sent (None: not known)."""
    proxy = mail_proxy(ip, user_agent)
    if proxy:
        return f"proxy_{proxy}"
    scanner = _scanner(ip, user_agent)
    if scanner:
        return scanner
    if seconds is not None and seconds < OPEN_TOO_FAST:
        return "too_fast"
    return None


def machine_click(
    ip: str | None, user_agent: str | None, seconds: float | None, *, hidden: bool = False
) -> str | None:
    """Why a click was a bot's ("hidden_link", "scanner_agent", "too_fast", …), or None."""
    if hidden:
        return "hidden_link"
    scanner = _scanner(ip, user_agent)
    if scanner:
        return scanner
    if seconds is not None and seconds < CLICK_TOO_FAST:
        return "too_fast"
    return None


# --- attribution ------------------------------------------------------------------------------

MAX_WINDOW_DAYS = 90


@dataclass(frozen=True)
class AttributionModel:
    """Which event is a conversion, where its revenue is, and the windows of last touch."""

    event: str = "order_completed"
    revenue_properties: tuple[str, ...] = ("revenue", "total")
    click_days: int = 5
    open_days: int = 1

    @property
    def name(self) -> str:
        return (
            f"last click within {_days(self.click_days)}, else last human open or delivery "
            f"within {_days(self.open_days)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "event": self.event,
            "revenue_properties": list(self.revenue_properties),
            "click_days": self.click_days,
            "open_days": self.open_days,
        }

    @property
    def lookback(self) -> timedelta:
        return timedelta(days=max(self.click_days, self.open_days))


def attribution_model(settings: Mapping[str, Any]) -> AttributionModel:
    """The workspace's model (its `attribution` setting, checked when it was saved)."""
    raw = settings.get("attribution") or {}
    default = AttributionModel()
    return AttributionModel(
        event=raw.get("event", default.event),
        revenue_properties=tuple(raw.get("revenue_properties", default.revenue_properties)),
        click_days=int(raw.get("click_days", default.click_days)),
        open_days=int(raw.get("open_days", default.open_days)),
    )


def check_attribution(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An `attribution` setting as given, checked: a problem names the field that is wrong."""
    allowed = {"event", "revenue_properties", "click_days", "open_days"}
    for key in raw:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            raise InvalidInput(f"attribution.{key}", f"unknown; one of {known}")
    out: dict[str, Any] = {}
    if "event" in raw:
        event = raw["event"]
        if not isinstance(event, str) or not 1 <= len(event.strip()) <= 200:
            raise InvalidInput("attribution.event", "an event name of 1-200 characters")
        out["event"] = event.strip()
    if "revenue_properties" in raw:
        props = raw["revenue_properties"]
        if (
            not isinstance(props, list)
            or not 1 <= len(props) <= 10
            or not all(isinstance(p, str) and 1 <= len(p) <= 100 for p in props)
        ):
            raise InvalidInput(
                "attribution.revenue_properties", "a list of 1-10 property names, first found wins"
            )
        out["revenue_properties"] = list(props)
    for key in ("click_days", "open_days"):
        if key in raw:
            days = raw[key]
            if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 90:
                raise InvalidInput(f"attribution.{key}", "a whole number of days from 0 to 90")
            out[key] = days
    return out


@dataclass(frozen=True)
class Touch:
    """A message as attribution sees it: when it went out and when it was last engaged with
    by a person (machine opens and bot clicks never count)."""

    message_id: int
    sent_at: datetime | None
    last_opened_at: datetime | None
    last_clicked_at: datetime | None


def attribute(touches: Iterable[Touch], at: datetime, model: AttributionModel) -> int | None:
    """The message a conversion at `at` is credited to: the last one clicked within
    `click_days`; failing that, the last one opened (by a person) or sent within `open_days`.
    Ties go to the newer message. None: no message earned it."""
    touches = list(touches)
    click_from = at - timedelta(days=model.click_days)
    clicks = [
        (t.last_clicked_at, t.message_id)
        for t in touches
        if t.last_clicked_at is not None and click_from <= t.last_clicked_at <= at
    ]
    if clicks:
        return max(clicks)[1]
    view_from = at - timedelta(days=model.open_days)
    views = [
        (moment, t.message_id)
        for t in touches
        for moment in (t.last_opened_at, t.sent_at)
        if moment is not None and view_from <= moment <= at
    ]
    return max(views)[1] if views else None


# --- the funnel, folded from the step log ------------------------------------------------------


class StepFact(NamedTuple):
    """A step of a run as the funnel sees it (a tuple: the store reads thousands a tick)."""

    id: int
    workspace_id: int
    run_id: int
    automation_id: int
    node: str
    outcome: str
    at: datetime


def funnel_counts(
    new: Iterable[StepFact],
    earlier: Iterable[StepFact],
    day_of: Callable[[int, datetime], str],
) -> dict[tuple[int, int, str, str], list[int]]:
    """What new steps (in log order) add to the funnel: (workspace, automation id, day, node)
    -> [reached, converted]. `earlier`: the same runs' steps before the first new one.

    A run reaches a node once, on the day of its first step there; it converted after the
    node when any goal step of the run comes at or after that first step. So a goal counts,
    on the day the node was reached, each node the run first reached since its previous goal
    (those before were counted by that one): every (run, node) is reached once and converted
    at most once, whatever batches the steps are folded in."""
    first: dict[int, dict[str, StepFact]] = {}  # run -> node -> its first step there
    last_goal: dict[int, int] = {}
    for s in sorted(earlier, key=lambda s: s.id):
        first.setdefault(s.run_id, {}).setdefault(s.node, s)
        if s.outcome == "goal_reached":
            last_goal[s.run_id] = s.id
    out: dict[tuple[int, int, str, str], list[int]] = {}

    def add(step: StepFact, which: int) -> None:
        key = (step.workspace_id, step.automation_id, day_of(step.workspace_id, step.at), step.node)
        out.setdefault(key, [0, 0])[which] += 1

    for s in new:
        nodes = first.setdefault(s.run_id, {})
        if s.node not in nodes:
            nodes[s.node] = s
            add(s, 0)
        if s.outcome == "goal_reached":
            since = last_goal.get(s.run_id, 0)
            for reached in nodes.values():
                if since < reached.id <= s.id:
                    add(reached, 1)
            last_goal[s.run_id] = s.id
    return out


MAX_MINOR = 10**15  # a trillion in major units: more is a typo, counted as nothing


def revenue_minor(properties: Mapping[str, Any], model: AttributionModel) -> int:
    """The conversion's revenue in minor units (cents): the first of the model's properties
    that holds a number (or a numeric string); 0 when none does."""
    for key in model.revenue_properties:
        value = properties.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float | str):
            try:
                amount = Decimal(str(value).strip())
            except InvalidOperation:
                continue
            if not amount.is_finite():
                continue
            minor = int((amount * 100).to_integral_value())
            return minor if abs(minor) <= MAX_MINOR else 0
    return 0


# --- figures ------------------------------------------------------------------------------------

# What the rollups count, per day and message/automation key.
MESSAGE_METRICS = (
    "sent",
    "failed",
    "delivered",
    "bounced_hard",
    "bounced_soft",
    "complained",
    "unsubscribed",
    "opens",
    "opens_unique",
    "opens_machine",
    "opens_unique_any",
    "clicks",
    "clicks_unique",
    "clicks_bot",
    "clicks_unique_any",
    "conversions",
    "revenue",
)
RUN_METRICS = ("entered", "completed", "goal_reached", "exited")
WORKSPACE_METRICS = ("conversions_all", "revenue_all")
METRICS = MESSAGE_METRICS + RUN_METRICS + WORKSPACE_METRICS


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


def rates(figures: Mapping[str, int], *, machine: bool = False) -> dict[str, float | None]:
    """Rates over the messages that reached someone (sent less bounced), as the leading
    products compute them. Machine opens and bot clicks are left out unless `machine`."""
    sent = figures.get("sent", 0)
    bounced = figures.get("bounced_hard", 0) + figures.get("bounced_soft", 0)
    reached = max(sent - bounced, 0)
    opened = figures.get("opens_unique_any" if machine else "opens_unique", 0)
    clicked = figures.get("clicks_unique_any" if machine else "clicks_unique", 0)
    return {
        "delivery_rate": _ratio(reached, sent),
        "bounce_rate": _ratio(bounced, sent),
        "open_rate": _ratio(opened, reached),
        "click_rate": _ratio(clicked, reached),
        "click_to_open_rate": _ratio(clicked, opened),
        "unsubscribe_rate": _ratio(figures.get("unsubscribed", 0), reached),
        "complaint_rate": _ratio(figures.get("complained", 0), reached),
        "conversion_rate": _ratio(figures.get("conversions", 0), reached),
        "revenue_per_recipient": (
            round(figures.get("revenue", 0) / 100 / reached, 2) if reached else None
        ),
    }


GRANULARITIES = ("day", "week", "month")


def period_of(day: date, granularity: str) -> date:
    """The first day of the week (Monday) or month `day` falls in; the day itself for "day"."""
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


MAX_RANGE_DAYS = 3660


EARLIEST, LATEST = date(1970, 1, 1), date(2999, 12, 31)


def check_range(start: date, end: date, granularity: str) -> None:
    if granularity not in GRANULARITIES:
        raise InvalidInput("granularity", "one of day, week, month")
    for name, day in (("from", start), ("to", end)):
        if not EARLIEST <= day <= LATEST:
            raise InvalidInput(name, "a day from 1970-01-01 to 2999-12-31")
    if end < start:
        raise InvalidInput("to", "the end of the range is before its start")
    if (end - start).days > MAX_RANGE_DAYS:
        raise InvalidInput("from", "a range of at most ten years")


def money(minor: int) -> float:
    """Minor units as a number of major units, for JSON and CSV."""
    return math.floor(minor) / 100


def graph_order(start: str, targets: Mapping[str, Iterable[str]]) -> list[str]:
    """Node ids breadth-first from `start` (each once), then any the walk did not reach."""
    order: list[str] = []
    queue = [start]
    while queue:
        here = queue.pop(0)
        if here in order or here not in targets:
            continue
        order.append(here)
        queue += [t for t in targets[here] if t not in order]
    return order + [n for n in targets if n not in order]


def _days(n: int) -> str:
    return "1 day" if n == 1 else f"{n} days"
