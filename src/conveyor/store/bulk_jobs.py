"""SQL for bulk jobs: their rows, the claim of the next job to work on, the next chunk of the
audience after the cursor (by contact id), and the cursor moved with the chunk's effects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, exists, func, insert, select, update

from conveyor.store.audiences import AudienceIds, audience_where
from conveyor.store.records import BulkJobRecord
from conveyor.store.schema import bulk_jobs, contacts


def waiting_clause() -> ColumnElement[bool]:
    """True when a bulk job is queued or running."""
    return exists().where(bulk_jobs.c.status.in_(("queued", "running")))


class BulkJobQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def add(self, values: dict[str, Any]) -> int:
        return int(self.conn.execute(insert(bulk_jobs).values(values)).inserted_primary_key[0])

    def get(self, workspace_id: int, job_id: int) -> BulkJobRecord | None:
        row = self.conn.execute(
            select(bulk_jobs).where(
                bulk_jobs.c.workspace_id == workspace_id, bulk_jobs.c.id == job_id
            )
        ).first()
        return BulkJobRecord.from_row(row) if row is not None else None

    def page(self, workspace_id: int, limit: int = 100) -> list[BulkJobRecord]:
        rows = self.conn.execute(
            select(bulk_jobs)
            .where(bulk_jobs.c.workspace_id == workspace_id)
            .order_by(bulk_jobs.c.id.desc())
            .limit(limit)
        )
        return [BulkJobRecord.from_row(r) for r in rows]

    def claim_next(self) -> BulkJobRecord | None:
        """The oldest job with work left, locked for this transaction (PostgreSQL: others skip
        it; SQLite has one writer). The claim and the chunk commit together."""
        stmt = (
            select(bulk_jobs)
            .where(bulk_jobs.c.status.in_(("queued", "running")))
            .order_by(bulk_jobs.c.id)
            .limit(1)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        row = self.conn.execute(stmt).first()
        return BulkJobRecord.from_row(row) if row is not None else None

    def any_waiting(self) -> bool:
        return bool(self.conn.execute(select(waiting_clause())).scalar())

    def count(self, audience: AudienceIds) -> int:
        stmt = select(func.count()).select_from(contacts).where(audience_where(audience))
        return int(self.conn.execute(stmt).scalar_one())

    def next_chunk(self, audience: AudienceIds, after: int, limit: int) -> list[int]:
        """The audience's contact ids after `after`, in order, at most `limit`."""
        stmt = (
            select(contacts.c.id)
            .where(audience_where(audience), contacts.c.id > after)
            .order_by(contacts.c.id)
            .limit(limit)
        )
        return list(self.conn.execute(stmt).scalars())

    def advance(
        self,
        job_id: int,
        *,
        cursor: int,
        done: int,
        outcomes: dict[str, int],
        status: str,
        now: datetime,
        expected_cursor: int,
    ) -> bool:
        """Move the cursor (compare-and-set on the cursor read): False if someone else did."""
        values: dict[str, Any] = {
            "cursor": cursor,
            "done": done,
            "outcomes": outcomes,
            "status": status,
            "updated_at": now,
        }
        if status in ("done", "failed", "cancelled"):
            values["finished_at"] = now
        result = self.conn.execute(
            update(bulk_jobs)
            .where(
                bulk_jobs.c.id == job_id,
                bulk_jobs.c.cursor == expected_cursor,
                bulk_jobs.c.status.in_(("queued", "running")),
            )
            .values(values)
        )
        return result.rowcount == 1

    def cancel(self, workspace_id: int, job_id: int, now: datetime) -> bool:
        result = self.conn.execute(
            update(bulk_jobs)
            .where(
                bulk_jobs.c.workspace_id == workspace_id,
                bulk_jobs.c.id == job_id,
                bulk_jobs.c.status.in_(("queued", "running")),
            )
            .values(status="cancelled", updated_at=now, finished_at=now)
        )
        return result.rowcount == 1

    def fail(self, job_id: int, error: str, now: datetime) -> None:
        self.conn.execute(
            update(bulk_jobs)
            .where(bulk_jobs.c.id == job_id)
            .values(status="failed", error=error[:1000], updated_at=now, finished_at=now)
        )
