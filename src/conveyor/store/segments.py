"""SQL for segments, their stored members, and the events their conditions count."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from conveyor.store import bulk
from conveyor.store.records import SegmentRecord
from conveyor.store.schema import events, segment_members, segments


class SegmentQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def all(self, workspace_id: int) -> list[SegmentRecord]:
        return [
            SegmentRecord.from_row(row)
            for row in self.conn.execute(
                select(segments)
                .where(segments.c.workspace_id == workspace_id)
                .order_by(segments.c.key)
            )
        ]

    def in_workspaces(self, workspace_ids: Iterable[int]) -> list[SegmentRecord]:
        return [
            SegmentRecord.from_row(row)
            for row in self.conn.execute(
                select(segments)
                .where(segments.c.workspace_id.in_(list(workspace_ids)))
                .order_by(segments.c.id)
            )
        ]

    def time_based(self) -> list[SegmentRecord]:
        return [
            SegmentRecord.from_row(row)
            for row in self.conn.execute(
                select(segments).where(segments.c.time_based).order_by(segments.c.id)
            )
        ]

    def add(self, workspace_id: int, values: dict[str, Any], now: datetime) -> int:
        return self.conn.execute(
            insert(segments)
            .values(workspace_id=workspace_id, created_at=now, updated_at=now, **values)
            .returning(segments.c.id)
        ).scalar_one()

    def change(self, segment_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(update(segments).where(segments.c.id == segment_id).values(**values))

    def remove(self, segment_id: int) -> None:
        self.conn.execute(delete(segments).where(segments.c.id == segment_id))

    # --- members ---------------------------------------------------------------------------

    def member_ids(self, segment_id: int) -> set[int]:
        return set(
            self.conn.execute(
                select(segment_members.c.contact_id).where(
                    segment_members.c.segment_id == segment_id
                )
            ).scalars()
        )

    def memberships(self, contact_ids: Iterable[int]) -> set[tuple[int, int]]:
        """(segment id, contact id) pairs stored for these contacts."""
        ids = list(contact_ids)
        found: set[tuple[int, int]] = set()
        for start in range(0, len(ids), 500):
            found.update(
                (row.segment_id, row.contact_id)
                for row in self.conn.execute(
                    select(segment_members.c.segment_id, segment_members.c.contact_id).where(
                        segment_members.c.contact_id.in_(ids[start : start + 500])
                    )
                )
            )
        return found

    def enter(self, pairs: list[tuple[int, int]], now: datetime) -> None:
        if pairs:
            self.conn.execute(
                insert(segment_members),
                [{"segment_id": s, "contact_id": c, "entered_at": now} for s, c in pairs],
            )

    def leave(self, pairs: list[tuple[int, int]]) -> None:
        for segment_id, contact_id in pairs:
            self.conn.execute(
                delete(segment_members).where(
                    segment_members.c.segment_id == segment_id,
                    segment_members.c.contact_id == contact_id,
                )
            )

    def leave_all(self, segment_id: int, contact_ids: list[int]) -> None:
        for start in range(0, len(contact_ids), 500):
            self.conn.execute(
                delete(segment_members).where(
                    segment_members.c.segment_id == segment_id,
                    segment_members.c.contact_id.in_(contact_ids[start : start + 500]),
                )
            )

    # --- events, for the evaluator -----------------------------------------------------------

    def contact_events(self, contact_ids: list[int], names: set[str]) -> list[Any]:
        """Events of these names for these contacts: what the evaluator needs, nothing more."""
        if not names or not contact_ids:
            return []
        rows: list[Any] = []
        for start in range(0, len(contact_ids), 500):
            params = {"ids": contact_ids[start : start + 500], "names": sorted(names)}
            rows += bulk.fetch(self.conn, _CONTACT_EVENTS, params)
        return rows


_CONTACT_EVENTS = select(
    events.c.contact_id, events.c.name, events.c.kind, events.c.timestamp, events.c.properties
).where(
    events.c.contact_id.in_(bindparam("ids", expanding=True)),
    events.c.name.in_(bindparam("names", expanding=True)),
)
