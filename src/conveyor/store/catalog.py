"""SQL for a workspace's catalog: declared custom fields and lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from conveyor.store import bulk
from conveyor.store.records import FieldRecord, ListRecord
from conveyor.store.schema import contact_tags, events, field_definitions, lists, subscriptions

_FIELD_COLUMNS = tuple(c.name for c in field_definitions.c)  # FieldRecord's fields, in order


class CatalogQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- custom fields --------------------------------------------------------------------

    def fields(self, workspace_id: int) -> list[FieldRecord]:
        return [
            FieldRecord.from_row(row)
            for row in self.conn.execute(
                select(field_definitions)
                .where(field_definitions.c.workspace_id == workspace_id)
                .order_by(field_definitions.c.key)
            )
        ]

    def fields_lookup(self, workspace_id: int) -> bulk.Lookup:
        """`fields` as a look-up to pipeline with others; `field_records` makes its rows."""
        return bulk.Lookup(field_definitions, _FIELD_COLUMNS, None, (), workspace_id)

    @staticmethod
    def field_records(rows: list[Any]) -> list[FieldRecord]:
        return sorted((FieldRecord(*row) for row in rows), key=lambda r: r.key)

    def add_fields(self, workspace_id: int, rows: list[dict[str, Any]], now: datetime) -> None:
        if rows:
            self.conn.execute(
                insert(field_definitions),
                [{**row, "workspace_id": workspace_id, "created_at": now} for row in rows],
            )

    def update_field(self, workspace_id: int, key: str, values: dict[str, Any]) -> bool:
        result = self.conn.execute(
            update(field_definitions)
            .where(field_definitions.c.workspace_id == workspace_id, field_definitions.c.key == key)
            .values(**values)
        )
        return result.rowcount == 1

    def delete_field(self, workspace_id: int, key: str) -> bool:
        result = self.conn.execute(
            delete(field_definitions).where(
                field_definitions.c.workspace_id == workspace_id, field_definitions.c.key == key
            )
        )
        return result.rowcount == 1

    # --- lists ----------------------------------------------------------------------------

    def lists(self, workspace_id: int) -> list[ListRecord]:
        return [
            ListRecord.from_row(row)
            for row in self.conn.execute(
                select(lists).where(lists.c.workspace_id == workspace_id).order_by(lists.c.key)
            )
        ]

    def add_list(
        self, workspace_id: int, key: str, name: str, double_opt_in: bool, now: datetime
    ) -> int:
        return self.conn.execute(
            insert(lists)
            .values(
                workspace_id=workspace_id,
                key=key,
                name=name,
                double_opt_in=double_opt_in,
                created_at=now,
            )
            .returning(lists.c.id)
        ).scalar_one()

    def update_list(self, workspace_id: int, key: str, values: dict[str, Any]) -> bool:
        result = self.conn.execute(
            update(lists)
            .where(lists.c.workspace_id == workspace_id, lists.c.key == key)
            .values(**values)
        )
        return result.rowcount == 1

    def delete_list(self, workspace_id: int, key: str) -> bool:
        result = self.conn.execute(
            delete(lists).where(lists.c.workspace_id == workspace_id, lists.c.key == key)
        )
        return result.rowcount == 1

    def list_counts(self, workspace_id: int) -> dict[int, dict[str, int]]:
        """Per list id, how many contacts hold each subscription status."""
        rows = self.conn.execute(
            select(subscriptions.c.list_id, subscriptions.c.status, func.count())
            .where(subscriptions.c.workspace_id == workspace_id)
            .group_by(subscriptions.c.list_id, subscriptions.c.status)
        )
        counts: dict[int, dict[str, int]] = {}
        for list_id, status, n in rows:
            counts.setdefault(list_id, {})[status] = n
        return counts

    # --- names in use (the segment builder's pickers) ---------------------------------------

    def tag_names(self, workspace_id: int, limit: int = 200) -> list[str]:
        """The tags contacts carry, in order, at most `limit`."""
        return self._distinct(contact_tags.c.tag, contact_tags.c.workspace_id, workspace_id, limit)

    def event_names(self, workspace_id: int, limit: int = 200) -> list[str]:
        """The names of the events in the log, in order, at most `limit`."""
        return self._distinct(events.c.name, events.c.workspace_id, workspace_id, limit)

    def _distinct(self, column: Any, scope: Any, workspace_id: int, limit: int) -> list[str]:
        # A loose index scan: one index seek per distinct name (both tables have an index on
        # (workspace_id, name)), where SELECT DISTINCT would read every row of a large log.
        found: list[str] = []
        while len(found) < limit:
            stmt = select(func.min(column)).where(scope == workspace_id)
            if found:
                stmt = stmt.where(column > found[-1])
            name = self.conn.execute(stmt).scalar()
            if name is None:
                break
            found.append(name)
        return found
