"""Tracking calls of the Segment spec (identify, track, page, screen, group, alias)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from conveyor.domain.errors import FieldError, InvalidInput
from conveyor.domain.fields import RESERVED_KEYS, STANDARD_FIELDS


def _id_text(value: Any) -> Any:
    # SDKs send numeric user ids now and then; an empty id means "not given".
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and not value.strip():
        return None
    return value


Id = Annotated[
    Annotated[str, StringConstraints(max_length=255)] | None,
    BeforeValidator(_id_text),
    Field(default=None),
]


class _Call(BaseModel):
    # Fields the spec does not name (RudderStack's `channel`, an SDK's own additions) are kept:
    # `logged_context` files them with the call, so no field a client sends is lost silently.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    messageId: Id = None
    userId: Id = None
    anonymousId: Id = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)

    @field_validator("timestamp", "originalTimestamp", "sentAt")
    @classmethod
    def _in_range(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            return _utc(value)
        except OverflowError:
            raise ValueError("is out of range") from None

    @model_validator(mode="after")
    def _needs_identity(self) -> _Call:
        if self.userId is None and self.anonymousId is None:
            raise ValueError("either userId or anonymousId is required")
        return self

    def logged_context(self) -> dict[str, Any]:
        """The context the log keeps for this call: the SDK's `context`, then `integrations`
        and, under `call`, what the client sent that has no column of its own — the raw
        timestamps it was corrected from and any field outside the spec."""
        kept = dict(self.context)
        if self.integrations:
            kept["integrations"] = self.integrations
        raw: dict[str, Any] = {
            name: value.isoformat().replace("+00:00", "Z")
            for name, value in (
                ("timestamp", self.timestamp),
                ("originalTimestamp", self.originalTimestamp),
                ("sentAt", self.sentAt),
            )
            if value is not None
        }
        raw.update(
            (k, v)
            for k, v in (self.model_extra or {}).items()
            if k not in _NOT_KEPT and v is not None
        )
        if raw:
            kept["call"] = raw
        return kept

    def occurred_at(self, received_at: datetime) -> datetime:
        """When it happened, corrected for the sender's clock the way Segment documents it:
        `timestamp = receivedAt - (sentAt - originalTimestamp)`. The device's own moment is
        `originalTimestamp` when sent, else `timestamp` (what every SDK and conveyor.js send
        beside `sentAt`); without `sentAt` a given moment is taken as is. A moment that would
        land after the call was received (sent "before" it happened) is the receipt itself."""
        moment = self.originalTimestamp if self.originalTimestamp is not None else self.timestamp
        if moment is None:
            return received_at
        if self.sentAt is None:
            return moment
        try:
            return min(received_at - (self.sentAt - moment), received_at)
        except OverflowError:  # a sentAt and a moment centuries apart: no clock is that far off
            return moment


# Top-level names with nothing to keep: the key (never stored) and what the server sets itself.
_NOT_KEPT = frozenset({"writeKey", "receivedAt", "type"})


class Identify(_Call):
    type: Literal["identify"]
    traits: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _context_traits(self) -> Identify:
        # RudderStack's SDKs send an identify's traits only in `context.traits`; analytics.js
        # repeats the user's cached traits there. The call's own traits win a clash.
        extra = self.context.get("traits")
        if isinstance(extra, dict) and extra:
            self.traits = {**extra, **self.traits}
        return self


class Track(_Call):
    type: Literal["track"]
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class Page(_Call):
    type: Literal["page"]
    name: str | None = Field(default=None, max_length=500)
    category: str | None = Field(default=None, max_length=500)
    properties: dict[str, Any] = Field(default_factory=dict)


class Screen(_Call):
    type: Literal["screen"]
    name: str | None = Field(default=None, max_length=500)
    category: str | None = Field(default=None, max_length=500)
    properties: dict[str, Any] = Field(default_factory=dict)


class Group(_Call):
    type: Literal["group"]
    groupId: Annotated[str, BeforeValidator(_id_text), Field(max_length=255)]
    traits: dict[str, Any] = Field(default_factory=dict)


class Alias(_Call):
    type: Literal["alias"]
    previousId: Annotated[str, BeforeValidator(_id_text), Field(max_length=255)]
    userId: Annotated[str, BeforeValidator(_id_text), Field(max_length=255)]


Call = Annotated[Identify | Track | Page | Screen | Group | Alias, Field(discriminator="type")]
CALL_TYPES = ("identify", "track", "page", "screen", "group", "alias")
_CALL = TypeAdapter(Call)


def parse_call(
    raw: Any, *, call_type: str | None = None
) -> Identify | Track | Page | Screen | Group | Alias:
    """Validate one call; `call_type` is the endpoint's type when the body may leave it out."""
    if not isinstance(raw, dict):
        raise InvalidInput("", "each call must be a JSON object")
    if call_type is not None:
        given = raw.get("type")
        if given is None:
            raw = {**raw, "type": call_type}
        elif given != call_type:
            raise InvalidInput("type", f"this endpoint takes '{call_type}' calls, not '{given}'")
    elif raw.get("type") not in CALL_TYPES:
        raise InvalidInput("type", f"must be one of {', '.join(CALL_TYPES)}")
    try:
        return _CALL.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput.many(field_errors(exc, skip_first=True)) from None


def field_errors(exc: ValidationError, *, skip_first: bool = False) -> list[FieldError]:
    """Pydantic errors as (dotted field path, message) pairs."""
    errors = []
    for err in exc.errors():
        loc = list(err["loc"][1:] if skip_first and err["loc"] else err["loc"])
        path = ".".join(str(part) for part in loc)
        message = err["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if err["type"] == "missing":
            message = "is required"
        if not path and "userId" in message:
            path = "userId"
        errors.append(FieldError(path, message))
    return errors


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
_TRAIT_ALIASES = {"firstname": "first_name", "lastname": "last_name", "userid": None, "id": None}


def trait_key(raw: str) -> str | None:
    """The contact attribute a trait lands in: `firstName` → `first_name`; None to skip it."""
    key = _CAMEL.sub(r"_\1", raw.strip()).lower().replace(" ", "_").replace("-", "_")
    compact = key.replace("_", "")
    if compact in _TRAIT_ALIASES:
        return _TRAIT_ALIASES[compact]
    if key in RESERVED_KEYS and key not in STANDARD_FIELDS:
        return f"trait_{key}"  # e.g. Segment's `createdAt` must not pose as our own created_at
    return key


def traits_to_values(traits: dict[str, Any]) -> dict[str, Any]:
    """Flatten Segment traits into contact attribute values (nested objects joined with `_`)."""
    values: dict[str, Any] = {}

    def visit(prefix: str, obj: dict[str, Any]) -> None:
        for raw_key, value in obj.items():
            key = trait_key(str(raw_key))
            if key is None:
                continue
            key = f"{prefix}_{key}" if prefix else key
            if isinstance(value, dict):
                visit(key, value)
            else:
                values[key] = value

    visit("", traits)
    if "name" in values and isinstance(values["name"], str):
        first, _, last = values["name"].strip().partition(" ")
        values.setdefault("first_name", first or None)
        if last:
            values.setdefault("last_name", last.strip())
        del values["name"]
    return values
