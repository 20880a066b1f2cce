"""SQL for the append-only event log."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, insert, select

from conveyor.store.schema import events


class EventQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def seen_message_ids(self, workspace_id: int, message_ids: Iterable[str]) -> set[str]:
        wanted = list(message_ids)
        seen: set[str] = set()
        for start in range(0, len(wanted), 500):
            seen.update(
                self.conn.execute(
                    select(events.c.message_id).where(
                        events.c.workspace_id == workspace_id,
                        events.c.message_id.in_(wanted[start : start + 500]),
                    )
                ).scalars()
            )
        return seen

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append events in the given order; the log's ids grow in that order."""
        if rows:
            self.conn.execute(insert(events), rows)

    def page(
        self,
        workspace_id: int,
        *,
        contact_id: int | None = None,
        name: str | None = None,
        kind: str | None = None,
        after_id: int | None = None,
        before_id: int | None = None,
        limit: int = 50,
        newest_first: bool = False,
    ) -> list[Any]:
        stmt = select(events).where(events.c.workspace_id == workspace_id)
        if contact_id is not None:
            stmt = stmt.where(events.c.contact_id == contact_id)
        if name is not None:
            stmt = stmt.where(events.c.name == name)
        if kind is not None:
            stmt = stmt.where(events.c.kind == kind)
        if after_id is not None:
            stmt = stmt.where(events.c.id > after_id)
        if before_id is not None:
            stmt = stmt.where(events.c.id < before_id)
        order = events.c.id.desc() if newest_first else events.c.id
        return list(self.conn.execute(stmt.order_by(order).limit(limit)))
