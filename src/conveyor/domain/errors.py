"""The exception tree every layer raises and the API turns into problem+json.

ConveyorError
├── InvalidInput        a value is wrong; names the field (and the batch index / CSV line)
├── NotFound            the thing does not exist in this workspace
├── Conflict            the change clashes with existing data (a duplicate email, a name in use)
├── Unauthorized        no or unknown API key
├── Forbidden           the key may not do this
└── PayloadTooLarge     a request or batch over the limits
"""

from __future__ import annotations

from dataclasses import dataclass, field


class ConveyorError(Exception):
    status = 400
    slug = "bad-request"
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass
class FieldError:
    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "detail": self.detail}


class InvalidInput(ConveyorError):
    status = 422
    slug = "invalid-input"
    title = "Invalid input"

    def __init__(self, field: str, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.field = field
        self.reason = detail
        self.errors = errors or [FieldError(field, detail)]

    def prefixed(self, prefix: str) -> InvalidInput:
        """The same error with its field paths nested under `prefix` (e.g. `traits`)."""

        def join(name: str) -> str:
            return f"{prefix}.{name}" if name else prefix

        return InvalidInput(
            join(self.field),
            self.reason,
            [FieldError(join(e.field), e.detail) for e in self.errors],
        )

    @classmethod
    def many(cls, errors: list[FieldError]) -> InvalidInput:
        first = errors[0]
        return cls(first.field, first.detail, errors)


class NotFound(ConveyorError):
    status = 404
    slug = "not-found"
    title = "Not found"


class Conflict(ConveyorError):
    status = 409
    slug = "conflict"
    title = "Conflict"

    def __init__(self, detail: str, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class Unauthorized(ConveyorError):
    status = 401
    slug = "unauthorized"
    title = "Unauthorized"


class Forbidden(ConveyorError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class PayloadTooLarge(ConveyorError):
    status = 413
    slug = "payload-too-large"
    title = "Payload too large"


@dataclass
class ItemError:
    """One bad item of a batch, reported by its position."""

    index: int
    errors: list[FieldError] = field(default_factory=list)

    def as_dict(self, position: str = "index") -> dict[str, object]:
        first = self.errors[0]
        return {
            position: self.index,
            "field": first.field,
            "detail": first.detail,
            "errors": [e.as_dict() for e in self.errors],
        }
