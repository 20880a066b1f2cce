"""SMS text rules: how many segments a body costs (GSM-7 or UCS-2) and which carrier keyword
(STOP, START, HELP) an inbound reply is."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Encoding = Literal["GSM-7", "UCS-2"]
Keyword = Literal["stop", "start", "help"]

# GSM 03.38 default alphabet (the escape 0x1B itself excluded): one septet each.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Its extension table: an escape septet plus one, so two septets each.
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

# (one segment, per part of a concatenated message): the user-data header of a concatenated
# message takes 7 septets / 3 UTF-16 units of every part.
LIMITS: dict[Encoding, tuple[int, int]] = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsSegments:
    encoding: Encoding
    units: int  # septets for GSM-7 (extension characters count 2), UTF-16 code units for UCS-2
    segments: int  # 0 for an empty body, which providers refuse to send


def _units(body: str) -> tuple[Encoding, list[int]]:
    """Each character's size in the encoding the whole body needs."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body):
        return "GSM-7", [2 if c in GSM7_EXTENSION else 1 for c in body]
    return "UCS-2", [2 if ord(c) > 0xFFFF else 1 for c in body]


def segments(body: str) -> SmsSegments:
    """The encoding `body` is sent in and the number of segments (billed messages) it takes.

    One character outside GSM-7 switches the whole message to UCS-2. Parts of a concatenated
    message are filled greedily, and like handsets and Twilio do, an escape sequence or a
    surrogate pair is never cut across two parts, so a part may hold one unit less than its limit.
    """
    encoding, sizes = _units(body)
    total = sum(sizes)
    single, part = LIMITS[encoding]
    if total <= single:
        return SmsSegments(encoding, total, 1 if total else 0)
    count, used = 1, 0
    for size in sizes:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return SmsSegments(encoding, total, count)


# The keywords US carriers (CTIA) require and Twilio acts on by default; REVOKE and OPTOUT are
# the ones Twilio added in 2025 for the FCC's "any reasonable means" opt-out rule.
KEYWORDS: dict[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"), "stop"
    ),
    **dict.fromkeys(("START", "YES", "UNSTOP"), "start"),
    **dict.fromkeys(("HELP", "INFO"), "help"),
}

# One word, with anything that is neither a letter nor a digit around it (spaces, punctuation).
_ONE_WORD = re.compile(r"[\W_]*([^\W_]+)[\W_]*")


def keyword(body: str) -> Keyword | None:
    """The carrier keyword an inbound reply is: "stop", "start" or "help" when it is exactly one
    such word, in any case and with whitespace or punctuation around it ("Stop.", " STOP!");
    None for anything else, sentences included ("stop please"): carriers and Twilio act on
    single-word replies only."""
    match = _ONE_WORD.fullmatch(body)
    return KEYWORDS.get(match.group(1).upper()) if match else None
