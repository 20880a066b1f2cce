"""What a simulation is asked in words: a period's ends ("30d", a date, a moment) and the events
a test of one contact makes happen ("email.opened after 2 days")."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from conveyor.domain.conditions import parse_duration
from conveyor.domain.contacts import parse_status
from conveyor.domain.errors import InvalidInput
from conveyor.domain.fields import STANDARD_FIELDS, coerce, normalize_standard
from conveyor.services.conditions import ConditionContext
from conveyor.store.records import ContactRecord

SYNTHETIC_ID = -1  # a made-up contact's id: no stored contact has it


@dataclass(frozen=True)
class Injected:
    """An event a test of one contact makes happen: `name` at `after` from the start."""

    after: timedelta
    name: str
    properties: dict[str, Any] = field(default_factory=dict)


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


def made_up(
    raw: Any, ctx: ConditionContext, now: datetime, where: str = "contact"
) -> tuple[ContactRecord, set[str], dict[int, str]]:
    """A contact that exists only in a simulation: `{email, first_name, …, fields: {plan: pro},
    tags: [vip], lists: {newsletter: subscribed}, score: 10}`, validated like a real one."""
    if not isinstance(raw, dict):
        raise InvalidInput(where, "an object with standard fields, fields, tags, lists, score")
    allowed = {*STANDARD_FIELDS, "fields", "tags", "lists", "score"}
    extra = sorted(set(raw) - allowed)
    if extra:
        raise InvalidInput(f"{where}.{extra[0]}", f"one of {', '.join(sorted(allowed))}")
    region = ctx.workspace.default_country
    standard = {k: normalize_standard(k, raw.get(k), region) for k in STANDARD_FIELDS}
    fields = {}
    for key, value in (raw.get("fields") or {}).items():
        definition = ctx.fields.get(key)
        if definition is None:
            raise InvalidInput(f"{where}.fields.{key}", "is not a declared custom field")
        fields[key] = coerce(definition, value)
    tags = raw.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInput(f"{where}.tags", "a list of tags")
    subs = {}
    for key, status in (raw.get("lists") or {}).items():
        if key not in ctx.lists:
            raise InvalidInput(f"{where}.lists.{key}", f"no list '{key}' in this workspace")
        subs[ctx.lists[key]] = str(parse_status(status, f"{where}.lists.{key}"))
    score = raw.get("score", 0)
    if not isinstance(score, int) or isinstance(score, bool):
        raise InvalidInput(f"{where}.score", "a whole number")
    row = ContactRecord(
        SYNTHETIC_ID, ctx.workspace.id, *(standard[k] for k in STANDARD_FIELDS), score,
        {k: v for k, v in fields.items() if v is not None}, now, now,
    )  # fmt: skip
    return row, set(tags), subs
