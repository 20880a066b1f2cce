"""What a simulation is asked in words: a period's ends ("30d", a date, a moment) and the events
a test of one contact makes happen ("email.opened after 2 days")."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from conveyor.domain.conditions import parse_duration
from conveyor.domain.errors import InvalidInput
from conveyor.services.simulate import Injected


def moment(raw: str | None, now: datetime, where: str, default: datetime | None = None) -> datetime:
    """`30d` (that long before now), `2026-03-01` (its midnight UTC) or an ISO moment."""
    if raw is None or raw == "":
        if default is None:
            raise InvalidInput(where, "a period's start: '30d', a date or a moment")
        return default
    text = raw.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        found = datetime.fromisoformat(text)
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    except ValueError:
        pass
    return now - timedelta(seconds=parse_duration(text, where))


def injected(raw: Any, where: str = "events") -> list[Injected]:
    """`[{"at": "2 days", "event": "email.opened", "properties": {…}}, …]`."""
    if not isinstance(raw, list):
        raise InvalidInput(where, "a list of {at: DURATION, event: NAME, properties: {…}}")
    out = []
    for i, item in enumerate(raw):
        here = f"{where}.{i}"
        if not isinstance(item, dict) or set(item) - {"at", "event", "properties"}:
            raise InvalidInput(here, "{at: DURATION, event: NAME, properties: {…}}")
        name = item.get("event")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{here}.event", "an event name")
        at = item.get("at", "0 seconds")
        seconds = 0 if at in (0, "0", "0 seconds", "now") else parse_duration(at, f"{here}.at")
        properties = item.get("properties") or {}
        if not isinstance(properties, dict):
            raise InvalidInput(f"{here}.properties", "an object")
        out.append(Injected(timedelta(seconds=seconds), name.strip(), properties))
    return out
