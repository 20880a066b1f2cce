"""What the panel shows of contacts: a search (email, name, external id, tag, list, segment)
in keyset pages, and one contact's profile and timeline — every event, step and message with
its reason, newest first."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.contacts import Contact
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.contacts import Contacts, decode_cursor, encode_cursor
from conveyor.store.records import TimelineRecord
from conveyor.store.store import Store

PAGE = 50
RANK = {"message": 2, "step": 1, "event": 0}


@dataclass(frozen=True)
class Search:
    """What the search box and its filters asked for."""

    q: str = ""
    tag: str = ""
    list: str = ""
    segment: str = ""
    within: str = "any"  # any | email | name | external_id: what the box's text is

    @property
    def empty(self) -> bool:
        return not (self.q or self.tag or self.list or self.segment)


WITHIN = ("any", "email", "name", "external_id")


@dataclass(frozen=True)
class Choices:
    """The workspace's tags, lists and segments, for the filters' menus."""

    lists: list[tuple[str, str]]  # (key, name)
    segments: list[tuple[str, str]]


def encode_moment(at: datetime, kind: str, item_id: int) -> str:
    text = f"t{at.isoformat()}|{RANK[kind]}|{item_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_moment(cursor: str | None) -> tuple[datetime, int, int] | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("t"):
            raise ValueError(cursor)
        at, rank, item_id = text[1:].split("|")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or int(rank) not in RANK.values():
            raise ValueError(cursor)
        return moment, int(rank), int(item_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor", "is not a cursor this page handed out") from None


class ContactViews:
    def __init__(self, store: Store, clock: Clock, contacts: Contacts) -> None:
        self.store = store
        self.clock = clock
        self.contacts = contacts

    def choices(self, workspace: Workspace) -> Choices:
        with self.store.read() as tx:
            lists = [(row.key, row.name) for row in tx.catalog.lists(workspace.id)]
            segments = [(row.key, row.name) for row in tx.segments.all(workspace.id)]
        return Choices(lists, segments)

    def search(
        self, workspace: Workspace, search: Search, cursor: str | None = None, limit: int = PAGE
    ) -> tuple[list[Contact], str | None, str]:
        """Contacts matching the search, newest first; the cursor of the next page; what the
        box's text was matched as. Given `any`, the text is an exact external id if one has
        it, else the start of email addresses if any begins so, else part of a name (decided
        without the cursor, so every page of a search means the same)."""
        if search.within not in WITHIN:
            raise InvalidInput("within", f"one of {', '.join(WITHIN)}")
        if not 1 <= limit <= 200:
            raise InvalidInput("limit", "1-200")
        before = decode_cursor(cursor)
        q = search.q.strip()
        if len(q) > 320:
            raise InvalidInput("q", "at most 320 characters")
        with self.store.read() as tx:
            list_id = segment_id = None
            if search.list:
                found = [r.id for r in tx.catalog.lists(workspace.id) if r.key == search.list]
                if not found:
                    raise InvalidInput("list", f"no list '{search.list}' in this workspace")
                list_id = found[0]
            if search.segment:
                hits = [r.id for r in tx.segments.all(workspace.id) if r.key == search.segment]
                if not hits:
                    raise InvalidInput("segment", f"no segment '{search.segment}'")
                segment_id = hits[0]
            common: dict[str, Any] = {
                "before_id": before,
                "limit": limit + 1,
                "tag": search.tag.strip() or None,
                "list_id": list_id,
                "segment_id": segment_id,
            }
            search_in = tx.contact_search.search
            within = search.within if q else "any"
            if q and within == "any":
                if tx.contacts.by_external_ids(workspace.id, [q]):
                    within = "external_id"
                elif search_in(workspace.id, before_id=None, limit=1, email_prefix=q.lower()):
                    within = "email"
                else:
                    within = "name"
            key = {"email": "email_prefix", "external_id": "external_id", "name": "name"}
            given = {key[within]: q.lower() if within == "email" else q} if q else {}
            rows = search_in(workspace.id, **given, **common)
            more = len(rows) > limit
            rows = rows[:limit]
            views = self.contacts.views(tx, workspace, [r.id for r in rows])
        found = [views[r.id] for r in rows if r.id in views]
        return found, (encode_cursor(rows[-1].id) if more else None), within

    def timeline(
        self, workspace: Workspace, contact_id: int, cursor: str | None = None, limit: int = PAGE
    ) -> tuple[list[TimelineRecord], str | None]:
        if not 1 <= limit <= 200:
            raise InvalidInput("limit", "1-200")
        before = decode_moment(cursor)
        with self.store.read() as tx:
            if not tx.contacts.by_ids(workspace.id, [contact_id]):
                raise NotFound(f"no contact {contact_id} in this workspace")
            rows = tx.contact_search.timeline(workspace.id, contact_id, before, limit + 1)
        rows.sort(key=lambda r: (r.at, RANK[r.kind], r.id), reverse=True)
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if rows else None
        return rows, (encode_moment(last.at, last.kind, last.id) if more and last else None)
