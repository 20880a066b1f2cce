"""Contacts as the engine sees them, list subscription states, and the system event names."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from conveyor.domain.errors import InvalidInput


class SubscriptionStatus(StrEnum):
    SUBSCRIBED = "subscribed"
    UNCONFIRMED = "unconfirmed"  # double opt-in: waiting for the contact to confirm
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class SystemEvent(StrEnum):
    """Appended to the log, in the same transaction, for every data change from any path."""

    CONTACT_CREATED = "contact.created"
    CONTACT_MERGED = "contact.merged"
    CONTACT_DELETED = "contact.deleted"
    FIELD_CHANGED = "field.changed"
    TAG_ADDED = "tag.added"
    TAG_REMOVED = "tag.removed"
    LIST_SUBSCRIBED = "list.subscribed"
    LIST_UNSUBSCRIBED = "list.unsubscribed"
    LIST_CONFIRMATION_REQUESTED = "list.confirmation_requested"
    SCORE_CHANGED = "score.changed"


def subscription_event(status: SubscriptionStatus) -> SystemEvent:
    if status is SubscriptionStatus.SUBSCRIBED:
        return SystemEvent.LIST_SUBSCRIBED
    if status is SubscriptionStatus.UNCONFIRMED:
        return SystemEvent.LIST_CONFIRMATION_REQUESTED
    return SystemEvent.LIST_UNSUBSCRIBED


def parse_status(raw: Any, field_name: str = "status") -> SubscriptionStatus:
    try:
        return SubscriptionStatus(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in SubscriptionStatus)
        raise InvalidInput(
            field_name, f"'{str(raw)[:30]}' is not a status; use one of {allowed}"
        ) from None


TAG = re.compile(r"^[^\s,;][^,;]{0,99}$")
LIST_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def normalize_tag(raw: Any, field_name: str = "tags") -> str:
    if not isinstance(raw, str):
        raise InvalidInput(field_name, "a tag is text")
    tag = raw.strip()
    if not TAG.match(tag):
        raise InvalidInput(
            field_name, f"'{tag[:40]}' is not a tag: 1-100 characters, no comma or semicolon"
        )
    return tag


def check_list_key(key: str) -> str:
    if not LIST_KEY.match(key):
        raise InvalidInput("key", "a list key is 1-64 of a-z, 0-9, - and _, like 'newsletter'")
    return key


@dataclass(frozen=True)
class ListInfo:
    id: int
    key: str
    name: str
    double_opt_in: bool


@dataclass
class Contact:
    """A read-only view of a contact with everything that hangs off it."""

    id: int
    external_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    locale: str | None
    score: int
    fields: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    tags: list[str] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)
    anonymous_ids: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # named scores now, rounded
