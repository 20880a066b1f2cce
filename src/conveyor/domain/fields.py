"""Contact fields: the standard ones, typed custom fields, and how raw values are stored."""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from email_validator import EmailNotValidError, validate_email

from conveyor.domain.errors import InvalidInput


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    MULTI_CHOICE = "multi_choice"


# Columns of the contact itself; everything else is a custom field in `contact.fields`.
STANDARD_FIELDS = ("external_id", "email", "phone", "first_name", "last_name", "timezone", "locale")
RESERVED_KEYS = frozenset(
    {
        *STANDARD_FIELDS,
        "id",
        "score",
        "tags",
        "lists",
        "fields",
        "created_at",
        "updated_at",
        "anonymous_id",
        "anonymous_ids",
        "workspace",
    }
)
FIELD_KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_TEXT = 10_000
_TIMEZONES = frozenset(available_timezones())
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
_TRUE = {"true", "yes", "y", "1", "on", "t"}
_FALSE = {"false", "no", "n", "0", "off", "f", ""}


@dataclass(frozen=True)
class FieldDefinition:
    key: str
    type: FieldType
    label: str | None = None
    # For choice fields; None means any value is accepted (e.g. fields declared from SDK traits).
    choices: tuple[str, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "type": str(self.type),
            "label": self.label or self.key,
            "choices": list(self.choices) if self.choices is not None else None,
        }


def is_field_key(key: str) -> bool:
    return bool(FIELD_KEY.match(key)) and key not in RESERVED_KEYS


def check_field_key(key: str) -> None:
    if not FIELD_KEY.match(key):
        raise InvalidInput(
            "key", "must start with a lowercase letter and hold only a-z, 0-9 and _ (max 64)"
        )
    if key in RESERVED_KEYS:
        raise InvalidInput("key", f"'{key}' is a standard contact attribute, not a custom field")


def define_field(
    key: str, type_: str, label: str | None = None, choices: list[str] | None = None
) -> FieldDefinition:
    check_field_key(key)
    try:
        ftype = FieldType(type_)
    except ValueError:
        allowed = ", ".join(t.value for t in FieldType)
        raise InvalidInput("type", f"unknown field type '{type_}'; use one of {allowed}") from None
    if ftype in (FieldType.CHOICE, FieldType.MULTI_CHOICE):
        if choices is not None:
            cleaned = tuple(dict.fromkeys(str(c) for c in choices))
            if not cleaned:
                raise InvalidInput("choices", "needs at least one choice")
            choices = cleaned  # type: ignore[assignment]
    elif choices:
        raise InvalidInput(
            "choices", f"only choice and multi_choice fields have choices, not {ftype}"
        )
    return FieldDefinition(key, ftype, label, tuple(choices) if choices is not None else None)


def coerce(defn: FieldDefinition, raw: Any) -> Any:
    """The stored JSON value for `raw`, or InvalidInput naming the field. None clears a field."""
    if raw is None:
        return None
    try:
        return _COERCERS[defn.type](defn, raw)
    except InvalidInput as exc:
        raise InvalidInput(defn.key, exc.reason) from None


def _text(defn: FieldDefinition, raw: Any) -> str:
    if isinstance(raw, dict | list):
        raise InvalidInput(defn.key, "expects text, got an object or list")
    value = raw if isinstance(raw, str) else _scalar_text(raw)
    if len(value) > MAX_TEXT:
        raise InvalidInput(defn.key, f"text longer than {MAX_TEXT} characters")
    return value


def _scalar_text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


def _number(defn: FieldDefinition, raw: Any) -> int | float:
    if isinstance(raw, bool):
        raise InvalidInput(defn.key, "expects a number, got a boolean")
    if isinstance(raw, int):
        if not -(2**63) <= raw < 2**63:  # what a JSON column, and orjson writing it, can hold
            reason = "a whole number beyond 64 bits (±9.2e18): send it as a decimal, 1e30"
            raise InvalidInput(defn.key, reason)
        return raw
    if isinstance(raw, float):
        value = raw
    elif isinstance(raw, str):
        text = raw.strip().replace("_", "")
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(defn.key, f"expects a number, got '{raw[:50]}'") from None
    else:
        raise InvalidInput(defn.key, f"expects a number, got {type(raw).__name__}")
    if not math.isfinite(value):
        raise InvalidInput(defn.key, "expects a finite number")
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _boolean(defn: FieldDefinition, raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
    raise InvalidInput(defn.key, f"expects true or false, got '{str(raw)[:50]}'")


def _date(defn: FieldDefinition, raw: Any) -> str:
    if isinstance(raw, datetime):
        return raw.date().isoformat()
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, str):
        text = raw.strip()
        try:
            # The calendar day as written, whatever the offset: a birthday does not move with UTC.
            if _ISO_DATE.match(text):
                return date.fromisoformat(text).isoformat()
            if _ISO_DATETIME.match(text):
                return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()
        except ValueError:
            pass
    raise InvalidInput(defn.key, f"expects a date like 1990-05-17, got '{str(raw)[:50]}'")


def _datetime(defn: FieldDefinition, raw: Any) -> str:
    moment = parse_datetime(raw)
    if moment is None:
        raise InvalidInput(
            defn.key,
            f"expects an ISO 8601 date-time like 2026-05-17T09:30:00Z, got '{str(raw)[:50]}'",
        )
    return format_datetime(moment)


def _choice(defn: FieldDefinition, raw: Any) -> str:
    if isinstance(raw, dict | list):
        raise InvalidInput(defn.key, "expects one choice, got an object or list")
    value = _scalar_text(raw).strip()
    _check_choice(defn, value)
    return value


def _multi_choice(defn: FieldDefinition, raw: Any) -> list[str]:
    if isinstance(raw, str):
        items = [part.strip() for part in re.split(r"[;,]", raw) if part.strip()]
    elif isinstance(raw, list | tuple):
        if any(isinstance(item, dict | list) for item in raw):
            raise InvalidInput(defn.key, "expects a list of choices")
        items = [_scalar_text(item).strip() for item in raw]
    else:
        raise InvalidInput(defn.key, "expects a list of choices")
    values = list(dict.fromkeys(item for item in items if item))
    for value in values:
        _check_choice(defn, value)
    return values


def _check_choice(defn: FieldDefinition, value: str) -> None:
    if len(value) > 255:
        raise InvalidInput(defn.key, "a choice is at most 255 characters")
    if defn.choices is not None and value not in defn.choices:
        allowed = ", ".join(defn.choices[:20])
        raise InvalidInput(defn.key, f"'{value[:50]}' is not one of the choices: {allowed}")


_COERCERS = {
    FieldType.TEXT: _text,
    FieldType.NUMBER: _number,
    FieldType.BOOLEAN: _boolean,
    FieldType.DATE: _date,
    FieldType.DATETIME: _datetime,
    FieldType.CHOICE: _choice,
    FieldType.MULTI_CHOICE: _multi_choice,
}

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def infer_type(value: Any) -> FieldType | None:
    """The type to declare for a trait nobody declared yet; None for values no field can hold."""
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int | float):
        return FieldType.NUMBER
    if isinstance(value, str):
        if _ISO_DATE.match(value):
            return FieldType.DATE
        if _ISO_DATETIME.match(value) and parse_datetime(value) is not None:
            return FieldType.DATETIME
        return FieldType.TEXT
    if isinstance(value, list) and all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in value
    ):
        return FieldType.MULTI_CHOICE
    return None


def parse_datetime(raw: Any) -> datetime | None:
    """An aware UTC datetime from an ISO 8601 string or datetime; naive input is taken as UTC."""
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if len(text) < 10:
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00
        return None


@lru_cache(maxsize=1024)  # the engine formats the same few moments for thousands of runs
def format_datetime(moment: datetime) -> str:
    # One fixed shape, to the second, so stored values also compare correctly as text.
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- standard fields -------------------------------------------------------------------------


def normalize_email(raw: Any) -> str:
    if not isinstance(raw, str):
        raise InvalidInput("email", "expects an email address")
    ok, value = _normalized_email(raw.strip())
    if not ok:
        raise InvalidInput("email", value)
    return value


@functools.lru_cache(maxsize=65536)
def _normalized_email(text: str) -> tuple[bool, str]:
    """(True, normal form) or (False, why not); cached, since SDKs repeat the same addresses."""
    try:
        result = validate_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        return False, str(exc)
    # Case is kept by mailbox providers in theory and ignored in practice; one contact per address.
    return True, result.normalized.lower()


def normalize_phone(raw: Any, default_region: str | None = None) -> str:
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidInput("phone", "expects a phone number")
    text = str(raw).strip()
    import phonenumbers  # here, not at the top: every `conveyor` command paid for its import

    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        hint = "" if default_region else " (include the country code, e.g. +48…)"
        raise InvalidInput(
            "phone", f"'{text[:40]}' is not a phone number: {exc._msg}{hint}"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput("phone", f"'{text[:40]}' is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_timezone(raw: Any) -> str:
    if not isinstance(raw, str) or raw not in _TIMEZONES:
        raise InvalidInput(
            "timezone", f"'{str(raw)[:64]}' is not an IANA timezone like Europe/Warsaw"
        )
    ZoneInfo(raw)
    return raw


def normalize_locale(raw: Any) -> str:
    if not isinstance(raw, str) or not _LOCALE.match(raw) or len(raw) > 35:
        raise InvalidInput("locale", f"'{str(raw)[:35]}' is not a locale like en-US")
    parts = re.split(r"[-_]", raw)
    head = parts[0].lower()
    rest = [p.upper() if len(p) == 2 else p for p in parts[1:]]
    return "-".join([head, *rest])


def _short_text(name: str, limit: int):
    def normalize(raw: Any) -> str:
        if isinstance(raw, dict | list | bool) or raw is None:
            raise InvalidInput(name, "expects text")
        value = str(raw).strip()
        if not value:
            raise InvalidInput(name, "must not be empty; send null to clear it")
        if len(value) > limit:
            raise InvalidInput(name, f"at most {limit} characters")
        return value

    return normalize


normalize_external_id = _short_text("external_id", 255)
normalize_name = {
    "first_name": _short_text("first_name", 255),
    "last_name": _short_text("last_name", 255),
}


def normalize_standard(key: str, raw: Any, default_region: str | None = None) -> Any:
    """Validate and normalise one standard contact attribute; None clears it."""
    if raw is None:
        return None
    if key == "email":
        return normalize_email(raw)
    if key == "phone":
        return normalize_phone(raw, default_region)
    if key == "timezone":
        return normalize_timezone(raw)
    if key == "locale":
        return normalize_locale(raw)
    if key == "external_id":
        return normalize_external_id(raw)
    return normalize_name[key](raw)
