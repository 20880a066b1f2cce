"""The audience of a campaign or a bulk job as one SQL condition on `contacts`: members of any
of its lists (subscribed), segments or tags, minus members of any excluded one. Ids resolved by
the caller; the statement is built here so that counting, freezing and paging agree."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, false, not_, or_, true

from conveyor.domain.conditions import Condition
from conveyor.store.conditions import AudienceScope, ConditionSQL
from conveyor.store.schema import contact_tags, contacts, segment_members, subscriptions


@dataclass(frozen=True)
class AudienceIds:
    """An audience with its lists and segments as ids (the service resolves keys)."""

    workspace_id: int
    lists: tuple[int, ...] = ()
    segments: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    exclude_lists: tuple[int, ...] = ()
    exclude_segments: tuple[int, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    needs: str | None = None  # "email" | "phone": only contacts that have one
    # A condition (segment language) the contacts must also meet, with what it is decided
    # against; alone, it is the whole audience.
    condition: tuple[AudienceScope, Condition] | None = None
    dialect: str = "sqlite"


def _any_of(lists: tuple[int, ...], segments: tuple[int, ...], tags: tuple[str, ...]) -> Any:
    parts = []
    if lists:
        parts.append(
            exists().where(
                subscriptions.c.contact_id == contacts.c.id,
                subscriptions.c.list_id.in_(lists),
                subscriptions.c.status == "subscribed",
            )
        )
    if segments:
        parts.append(
            exists().where(
                segment_members.c.contact_id == contacts.c.id,
                segment_members.c.segment_id.in_(segments),
            )
        )
    if tags:
        parts.append(
            exists().where(contact_tags.c.contact_id == contacts.c.id, contact_tags.c.tag.in_(tags))
        )
    return or_(*parts) if parts else false()


def audience_where(audience: AudienceIds) -> Any:
    """The condition a contact row meets when it is in the audience."""
    sources = audience.lists or audience.segments or audience.tags
    clauses = [
        contacts.c.workspace_id == audience.workspace_id,
        _any_of(audience.lists, audience.segments, audience.tags) if sources else true(),
    ]
    if audience.condition is not None:
        scope, condition = audience.condition
        compiler = ConditionSQL(
            audience.dialect,
            scope.workspace_id,
            scope.now,
            lists=scope.lists,
            segments=scope.segments,
            default_timezone=scope.default_timezone,
            scores=scope.scores,
        )
        clauses.append(compiler.where(condition))
    elif not sources:
        clauses.append(false())
    if audience.exclude_lists or audience.exclude_segments or audience.exclude_tags:
        clauses.append(
            not_(_any_of(audience.exclude_lists, audience.exclude_segments, audience.exclude_tags))
        )
    if audience.needs == "email":
        clauses.append(contacts.c.email.is_not(None))
    elif audience.needs == "phone":
        clauses.append(contacts.c.phone.is_not(None))
    return and_(*clauses)
