"""The deliverability guard's rules, pure: which mailbox provider an address is at, and whether
marketing email to a provider flows, is throttled or is paused, given its rolling rates.

Mailbox providers judge a sender per provider: Gmail's bulk-sender rules ask for a spam
complaint rate below 0.3 % (and recommend below 0.1 %); Yahoo's are alike. A sender that crosses
the line with one provider keeps hurting its reputation there with every further campaign. The
guard watches each provider's complaint and hard-bounce rates over a rolling window and, before
the provider's line is reached, throttles (half the threshold: at most `throttle_per_hour`
marketing emails an hour to it) and then pauses marketing email to it (the threshold). A pause
holds until someone resumes it; rates then count from the resume. Transactional email is never
held, and held marketing email is delayed, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from conveyor.domain.conditions import parse_duration
from conveyor.domain.errors import InvalidInput

PROVIDERS = ("gmail", "yahoo", "outlook", "icloud", "other")
STATUSES = ("ok", "throttled", "paused")

# The consumer domains of the big mailbox providers (a workspace adds its own: `domains`).
DOMAINS: dict[str, str] = {
    **dict.fromkeys(("gmail.com", "googlemail.com"), "gmail"),
    **dict.fromkeys(
        (
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "yahoo.es",
            "yahoo.it",
            "yahoo.ca",
            "yahoo.com.au",
            "yahoo.co.jp",
            "yahoo.com.br",
            "ymail.com",
            "rocketmail.com",
            "aol.com",
            "aim.com",
            "verizon.net",
        ),  # fmt: skip
        "yahoo",
    ),
    **dict.fromkeys(
        (
            "outlook.com",
            "hotmail.com",
            "live.com",
            "msn.com",
            "hotmail.co.uk",
            "hotmail.fr",
            "hotmail.de",
            "hotmail.it",
            "hotmail.es",
            "outlook.fr",
            "outlook.de",
            "live.co.uk",
            "live.fr",
            "passport.com",
        ),  # fmt: skip
        "outlook",
    ),
    **dict.fromkeys(("icloud.com", "me.com", "mac.com"), "icloud"),
}


def provider_of(address: str | None, extra: Mapping[str, str] | None = None) -> str:
    """The mailbox provider of an address, by its domain (the workspace's map first)."""
    if not address or "@" not in address:
        return "other"
    domain = address.rsplit("@", 1)[1].strip().lower()
    if extra and domain in extra:
        return extra[domain]
    return DOMAINS.get(domain, "other")


@dataclass(frozen=True)
class GuardRules:
    complaint_rate: float = 0.002  # 0.2 %: below Gmail's 0.3 % line
    bounce_rate: float = 0.05  # hard bounces
    min_volume: int = 200  # emails sent to the provider in the window before it is judged
    window: int = 7 * 86400  # seconds the rates roll over
    throttle_at: float = 0.5  # of each threshold: throttle before pausing
    throttle_per_hour: int = 100  # marketing emails an hour to a throttled provider
    enabled: bool = True
    domains: Mapping[str, str] | None = None  # the workspace's own domain → provider

    def as_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "complaint_rate": self.complaint_rate,
            "bounce_rate": self.bounce_rate,
            "min_volume": self.min_volume,
            "window_seconds": self.window,
            "throttle_at": self.throttle_at,
            "throttle_per_hour": self.throttle_per_hour,
            "domains": dict(self.domains or {}),
        }


def parse_rules(raw: Any, where: str = "deliverability") -> GuardRules:
    """A workspace's `deliverability` setting; errors name the field."""
    if raw is None:
        return GuardRules()
    if not isinstance(raw, dict):
        raise InvalidInput(where, "a mapping: {complaint_rate: 0.002, bounce_rate: 0.05, ...}")
    keys = (
        "enabled", "complaint_rate", "bounce_rate", "min_volume", "window", "throttle_at",
        "throttle_per_hour", "domains",
    )  # fmt: skip
    extra = sorted(set(raw) - set(keys))
    if extra:
        raise InvalidInput(f"{where}.{extra[0]}", f"takes {', '.join(keys)}")

    def rate(key: str, default: float, top: float) -> float:
        value = raw.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value <= top:
            raise InvalidInput(f"{where}.{key}", f"a fraction above 0 and at most {top}")
        return float(value)

    def whole(key: str, default: int) -> int:
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInput(f"{where}.{key}", "a whole number >= 1")
        return value

    domains = raw.get("domains", {})
    if not isinstance(domains, dict) or not all(
        isinstance(k, str) and "." in k and v in PROVIDERS for k, v in domains.items()
    ):
        raise InvalidInput(
            f"{where}.domains", f"{{domain: provider}} with providers {', '.join(PROVIDERS)}"
        )
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput(f"{where}.enabled", "true or false")
    return GuardRules(
        complaint_rate=rate("complaint_rate", 0.002, 0.5),
        bounce_rate=rate("bounce_rate", 0.05, 0.9),
        min_volume=whole("min_volume", 200),
        window=parse_duration(raw.get("window", "7 days"), f"{where}.window"),
        throttle_at=rate("throttle_at", 0.5, 1.0),
        throttle_per_hour=whole("throttle_per_hour", 100),
        enabled=enabled,
        domains={k.lower(): v for k, v in domains.items()},
    )


@dataclass(frozen=True)
class ProviderCounts:
    provider: str
    sent: int
    hard_bounces: int
    complaints: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "hard_bounces": self.hard_bounces,
            "complaints": self.complaints,
            "bounce_rate": round(self.hard_bounces / self.sent, 6) if self.sent else None,
            "complaint_rate": round(self.complaints / self.sent, 6) if self.sent else None,
        }


@dataclass(frozen=True)
class Verdict:
    status: str  # ok | throttled | paused
    reason: str | None


def judge(counts: ProviderCounts, rules: GuardRules, current: str = "ok") -> Verdict:
    """Where a provider stands now. A pause holds until resumed; the rest follows the rates."""
    if current == "paused":
        return Verdict("paused", None)  # the reason it was paused for stays
    if not rules.enabled or counts.sent < rules.min_volume:
        return Verdict("ok", None)
    complaints = counts.complaints / counts.sent
    bounces = counts.hard_bounces / counts.sent
    c, b = f"{complaints:.2%}", f"{bounces:.2%}"
    tally = f"over {counts.sent} emails"
    if complaints >= rules.complaint_rate:
        line = f"{rules.complaint_rate:.2%}"
        return Verdict("paused", f"complaint rate {c} {tally} reached the {line} threshold")
    if bounces >= rules.bounce_rate:
        line = f"{rules.bounce_rate:.2%}"
        return Verdict("paused", f"hard-bounce rate {b} {tally} reached the {line} threshold")
    if complaints >= rules.complaint_rate * rules.throttle_at:
        return Verdict(
            "throttled",
            f"complaint rate {c} {tally} is near the {rules.complaint_rate:.2%} threshold",
        )
    if bounces >= rules.bounce_rate * rules.throttle_at:
        return Verdict(
            "throttled",
            f"hard-bounce rate {b} {tally} is near the {rules.bounce_rate:.2%} threshold",
        )
    return Verdict("ok", None)
