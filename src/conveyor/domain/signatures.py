"""Webhook signatures, Stripe's scheme: `Conveyor-Signature: t=<unix>,v1=<hex HMAC-SHA256>` over
`f"{t}." + body`, so a receiver can check who sent a call and that it is not a replay.

Pure functions: the caller hands in the secret, the time and the raw body bytes. Also the two
checks every token from a URL goes through (`digits`, `same_secret`): such a token is any text
a stranger typed, and a malformed one is simply not valid, never an error.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Conveyor-Signature"
DEFAULT_TOLERANCE = 300  # seconds a signature stays valid, either side of `now` (clock skew)


def digits(text: str, max_length: int = 18) -> bool:
    """Whether `text` is a number written in ASCII digits: `str.isdigit` also accepts '²' and
    '١', which `int()` then refuses."""
    return text.isascii() and text.isdigit() and len(text) <= max_length


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of an untrusted token with the expected one. Compared as bytes:
    `hmac.compare_digest` raises on non-ASCII text instead of answering False."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


def _digest(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `Conveyor-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify(
    secret: bytes, header: str, body: bytes, now: int, tolerance: int = DEFAULT_TOLERANCE
) -> bool:
    """Whether `header` signs exactly `body` with `secret`, at a time within `tolerance` seconds
    of `now`. Several `v1=` entries are accepted (one per secret while rotating); a malformed
    header is simply not valid."""
    timestamp: int | None = None
    candidates: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            return False
        if key == "t":
            if timestamp is not None or not digits(value):
                return False
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, timestamp, body)
    return any(same_secret(c, expected) for c in candidates)
