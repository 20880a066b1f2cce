"""SQL for segments, their stored members, and event-log cursors."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from conveyor.store.records import SegmentRecord
from conveyor.store.schema import events, log_cursors, segment_members, segments


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

    # --- the event log, for consumers --------------------------------------------------------

    def cursor(self, name: str) -> int | None:
        """The consumer's position, locked until the transaction ends; None when another
        process holds it (PostgreSQL), so that consumer skips this round instead of queueing."""
        if (
            self.conn.execute(select(log_cursors.c.name).where(log_cursors.c.name == name)).first()
            is None
        ):
            insert_stmt = insert(log_cursors).values(name=name, position=0)
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                insert_stmt = (
                    pg_insert(log_cursors).values(name=name, position=0).on_conflict_do_nothing()
                )
            self.conn.execute(insert_stmt)
        stmt = select(log_cursors.c.position).where(log_cursors.c.name == name)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        return self.conn.execute(stmt).scalar()

    def behind(self, name: str) -> bool:
        """Whether the log holds events past this consumer's cursor (a cheap, unlocked look)."""
        position = self.conn.execute(
            select(log_cursors.c.position).where(log_cursors.c.name == name)
        ).scalar()
        latest = self.conn.execute(select(func.max(events.c.id))).scalar()
        return latest is not None and (position is None or latest > position)

    def move_cursor(self, name: str, position: int) -> None:
        self.conn.execute(
            update(log_cursors).where(log_cursors.c.name == name).values(position=position)
        )

    def events_after(self, position: int, up_to: int, limit: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(
                    events.c.id,
                    events.c.workspace_id,
                    events.c.contact_id,
                    events.c.kind,
                    events.c.name,
                    events.c.properties,
                )
                .where(events.c.id > position, events.c.id <= up_to)
                .order_by(events.c.id)
                .limit(limit)
            )
        )

    def contact_events(self, contact_ids: list[int], names: set[str]) -> list[Any]:
        """Events of these names for these contacts: what the evaluator needs, nothing more."""
        if not names or not contact_ids:
            return []
        rows: list[Any] = []
        for start in range(0, len(contact_ids), 500):
            rows += self.conn.execute(
                select(
                    events.c.contact_id,
                    events.c.name,
                    events.c.kind,
                    events.c.timestamp,
                    events.c.properties,
                ).where(
                    events.c.contact_id.in_(contact_ids[start : start + 500]),
                    events.c.name.in_(sorted(names)),
                )
            ).all()
        return rows
