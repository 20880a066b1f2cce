"""SQL for operations: worker heartbeats, and the few set-based reads that health checks and
metrics make (log lag, due runs, outbox by state, the schema revision)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, func, literal, select

from conveyor.store import migrate
from conveyor.store.schema import events, log_cursors, outbox, runs, worker_heartbeats


@dataclass(frozen=True, slots=True)
class HeartbeatRecord:
    worker: str
    role: str
    started_at: datetime
    beat_at: datetime


@dataclass(frozen=True, slots=True)
class LogPosition:
    head: int  # the newest event id (0: an empty log)
    cursors: dict[str, int]  # consumer → the id it has handled up to


class OpsQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def ping(self) -> None:
        self.conn.execute(select(literal(1))).one()

    def schema_revision(self) -> tuple[str | None, str | None]:
        """(the database's revision, the code's head)."""
        from alembic.runtime.migration import MigrationContext

        current = MigrationContext.configure(self.conn).get_current_revision()
        return current, migrate.HEAD

    # --- heartbeats ----------------------------------------------------------------------------

    def beat(self, worker: str, role: str, started_at: datetime, now: datetime) -> None:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        stmt = insert(worker_heartbeats).values(
            worker=worker, role=role, started_at=started_at, beat_at=now
        )
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[worker_heartbeats.c.worker],
                set_={"beat_at": now, "role": role, "started_at": started_at},
            )
        )

    def forget(self, worker: str) -> None:
        self.conn.execute(delete(worker_heartbeats).where(worker_heartbeats.c.worker == worker))

    def forget_older_than(self, before: datetime) -> int:
        """Drop rows of workers gone this long (killed ones never remove their own)."""
        result = self.conn.execute(
            delete(worker_heartbeats).where(worker_heartbeats.c.beat_at < before)
        )
        return result.rowcount or 0

    def heartbeats(self) -> list[HeartbeatRecord]:
        rows = self.conn.execute(select(worker_heartbeats).order_by(worker_heartbeats.c.worker))
        return [HeartbeatRecord(*row) for row in rows]

    # --- backlog -------------------------------------------------------------------------------

    def log_position(self) -> LogPosition:
        head = self.conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one()
        cursors = dict(self.conn.execute(select(log_cursors.c.name, log_cursors.c.position)).all())
        return LogPosition(int(head), {k: int(v) for k, v in cursors.items()})

    def due_runs(self, now: datetime, cap: int | None = None) -> int:
        """Active runs whose timer is due; counted up to `cap` (a bounded look for health)."""
        due = select(runs.c.id).where(runs.c.status == "active", runs.c.wake_at <= now)
        if cap is not None:
            due = due.limit(cap)
        return int(self.conn.execute(select(func.count()).select_from(due.subquery())).scalar_one())

    def outbox_counts(self) -> dict[tuple[str, str], int]:
        """Messages by (channel, status), every workspace."""
        rows = self.conn.execute(
            select(outbox.c.channel, outbox.c.status, func.count()).group_by(
                outbox.c.channel, outbox.c.status
            )
        )
        return {(channel, status): int(n) for channel, status, n in rows}
