"""Contacts out, in the shapes imports take back: CSV (one row per contact) or NDJSON (one JSON
object per line), streamed page by page so a million contacts never sit in memory.

Columns: `id`, the standard attributes, `score`, `tags` (`;`-joined), one `list:KEY` column per
list holding the contact's status there (empty: never subscribed), `created_at`, then every
declared custom field. `conveyor contacts import` reads the same file back into the same
workspace without changing anything; `id` and `created_at` are there for the reader and ignored
on import.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson

from conveyor.domain.contacts import Contact
from conveyor.domain.fields import STANDARD_FIELDS

FORMATS = ("csv", "ndjson")
Pages = Callable[[str | None], tuple[list[Contact], str | None]]  # cursor → (page, next cursor)


def cell(value: Any) -> Any:
    """A custom field's value as a CSV cell the import reads back to the same value."""
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class ContactExport:
    def __init__(self, fields: list[str], lists: list[str]) -> None:
        self.fields = sorted(fields)
        self.lists = sorted(lists)

    def columns(self) -> list[str]:
        return [
            "id",
            *STANDARD_FIELDS,
            "score",
            "tags",
            *(f"list:{key}" for key in self.lists),
            "created_at",
            *self.fields,
        ]

    def row(self, contact: Contact) -> list[Any]:
        return [
            contact.id,
            *(getattr(contact, name) for name in STANDARD_FIELDS),
            contact.score,
            ";".join(contact.tags),
            *(contact.lists.get(key, "") for key in self.lists),
            contact.created_at.isoformat(),
            *(cell(contact.fields.get(key)) for key in self.fields),
        ]

    def document(self, contact: Contact) -> dict[str, Any]:
        return {
            "id": contact.id,
            **{name: getattr(contact, name) for name in STANDARD_FIELDS},
            "score": contact.score,
            "tags": contact.tags,
            "lists": contact.lists,
            "fields": contact.fields,
            "created_at": contact.created_at.isoformat(),
        }

    def stream(self, pages: Pages, fmt: str = "csv") -> Iterator[str]:
        """The whole file, a page of contacts per chunk."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if fmt == "csv":
            writer.writerow(self.columns())
        cursor: str | None = None
        while True:
            contacts, cursor = pages(cursor)
            for contact in contacts:
                if fmt == "csv":
                    writer.writerow(self.row(contact))
                else:
                    buffer.write(orjson.dumps(self.document(contact), default=str).decode())
                    buffer.write("\n")
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if cursor is None:
                return
