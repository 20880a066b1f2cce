"""What every channel provider takes and gives back: rendered messages in, a receipt or a
`DeliveryError` out. Providers are async and injected, so tests swap real peers, not code.

DeliveryError
├── transient=True    try again later (connection refused, 4xx SMTP reply, HTTP 5xx/429, timeout)
└── transient=False   never try again (5xx SMTP reply for the recipient, HTTP 4xx, bad address)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Email:
    """A composed MIME message, ready for the wire."""

    sender: str  # the envelope sender (bare address)
    recipients: tuple[str, ...]
    data: bytes  # the whole RFC 5322 message
    message_id: str  # the Message-ID header, without angle brackets


@dataclass(frozen=True)
class Sms:
    to: str  # E.164
    body: str
    idempotency_key: str
    sender: str | None = None  # E.164 or an alphanumeric sender id; the provider's default if None


@dataclass(frozen=True)
class WebhookCall:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    idempotency_key: str


@dataclass(frozen=True)
class Receipt:
    """The provider took the message. `provider_id` is its id for it (for later status events)."""

    provider_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. status code, duration


class DeliveryError(Exception):
    def __init__(
        self,
        reason: str,
        *,
        transient: bool,
        bounce: str | None = None,  # "hard" / "soft" when the receiving server refused the address
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.bounce = bounce
        self.detail = detail or {}


SHORT = 160  # characters of a remote server's words that a tenant may read


def short(text: str) -> str:
    """A remote answer as a short status line: its first line, printable, cut at SHORT."""
    line = next((part for part in text.splitlines() if part.strip()), "").strip()
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line if len(line) <= SHORT else line[: SHORT - 1] + "…"


class EmailProvider(Protocol):
    async def send(self, email: Email) -> Receipt: ...

    async def close(self) -> None: ...


class SmsProvider(Protocol):
    async def send(self, sms: Sms) -> Receipt: ...

    async def close(self) -> None: ...


class WebhookProvider(Protocol):
    async def send(self, call: WebhookCall) -> Receipt: ...

    async def close(self) -> None: ...
