"""Signed tokens in tracking and unsubscribe links, and how to tell a mail proxy's open.

A token is `WORKSPACE.MESSAGE[.LINK].MAC`: the MAC is HMAC-SHA256 of the kind of link and the
numbers, keyed by the workspace's secret, cut to 128 bits. A token altered by one character,
or made for another kind of link (an open token used as a click), does not verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from conveyor.domain.signatures import digits, same_secret

KINDS = ("open", "click", "unsubscribe")


@dataclass(frozen=True)
class TokenData:
    workspace_id: int
    message_id: int
    link: int | None = None


def sign(
    secret: str, kind: str, workspace_id: int, message_id: int, link: int | None = None
) -> str:
    numbers = [workspace_id, message_id] if link is None else [workspace_id, message_id, link]
    body = ".".join(str(n) for n in numbers)
    return f"{body}.{_mac(secret, kind, body)}"


def workspace_of(token: str) -> int | None:
    """The workspace a token claims to be from (unverified: only to find the secret)."""
    head = token.split(".", 1)[0]
    return int(head) if digits(head, 11) else None


def verify(secret: str, kind: str, token: str) -> TokenData | None:
    parts = token.split(".")
    if len(parts) not in (3, 4) or not all(digits(p) for p in parts[:-1]):
        return None
    body = ".".join(parts[:-1])
    if not same_secret(parts[-1], _mac(secret, kind, body)):
        return None
    numbers = [int(p) for p in parts[:-1]]
    link = numbers[2] if len(numbers) == 3 else None
    if (kind == "click") != (link is not None):
        return None
    return TokenData(numbers[0], numbers[1], link)


def _mac(secret: str, kind: str, body: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown link kind {kind!r}")
    digest = hmac.new(secret.encode(), f"{kind}:{body}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()


# Apple Mail Privacy Protection fetches every image from Apple's 17.0.0.0/8 on delivery;
# Gmail and Yahoo fetch through their image proxies. Such an "open" says little about a person.
_APPLE = ipaddress.ip_network("17.0.0.0/8")
_PROXY_AGENTS = {
    "GoogleImageProxy": "google",
    "YahooMailProxy": "yahoo",
    "Outlook-iOS": None,  # a real client, listed so it is never mistaken for a proxy
}


def mail_proxy(ip: str | None, user_agent: str | None) -> str | None:
    """Which privacy proxy fetched the open pixel ("apple", "google", "yahoo"), or None."""
    agent = user_agent or ""
    for marker, proxy in _PROXY_AGENTS.items():
        if marker in agent:
            return proxy
    try:
        address = ipaddress.ip_address(ip) if ip else None
    except ValueError:
        address = None
    if address is not None and address.version == 4 and address in _APPLE:
        return "apple"
    return None
