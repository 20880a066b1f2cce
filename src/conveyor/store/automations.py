"""SQL for automations, their versions, runs (claimed with SKIP LOCKED), steps and the outbox."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    bindparam,
    func,
    insert,
    select,
    update,
)

from conveyor.store import bulk
from conveyor.store.records import MovedRunRecord, RunPositionRecord
from conveyor.store.schema import automation_versions, automations, outbox, runs, steps


def due_clause(now: datetime | ColumnElement[Any]) -> ColumnElement[bool]:
    """True when any run's timer is due by `now`: the earliest timer, one step into the
    (status, wake_at) index. (`EXISTS (… wake_at <= $1)` was planned, once prepared, as a scan
    of every run: tests/integration/test_queue_plans.py.)"""
    earliest = select(func.min(runs.c.wake_at)).where(runs.c.status == "active")
    return earliest.scalar_subquery() <= now


class AutomationQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    # --- definitions -----------------------------------------------------------------------

    def all(self, workspace_id: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(automations)
                .where(automations.c.workspace_id == workspace_id)
                .order_by(automations.c.key)
            )
        )

    def by_key(self, workspace_id: int, key: str) -> Any:
        return self.conn.execute(
            select(automations).where(
                automations.c.workspace_id == workspace_id, automations.c.key == key
            )
        ).first()

    def by_ids(self, ids: Iterable[int]) -> dict[int, Any]:
        return {
            row.id: row
            for row in self.conn.execute(select(automations).where(automations.c.id.in_(list(ids))))
        }

    def active_everywhere(self) -> list[Any]:
        """Active automations of every workspace (for the date-trigger sweep)."""
        return list(self.conn.execute(select(automations).where(automations.c.status == "active")))

    def add(self, workspace_id: int, key: str, name: str, now: datetime) -> int:
        return self.conn.execute(
            insert(automations)
            .values(
                workspace_id=workspace_id,
                key=key,
                name=name,
                status="draft",
                version=0,
                created_at=now,
                updated_at=now,
            )
            .returning(automations.c.id)
        ).scalar_one()

    def change(self, automation_id: int, values: dict[str, Any]) -> None:
        self.conn.execute(
            update(automations).where(automations.c.id == automation_id).values(**values)
        )

    def add_version(
        self, automation_id: int, version: int, definition: dict[str, Any], now: datetime
    ) -> None:
        self.conn.execute(
            insert(automation_versions).values(
                automation_id=automation_id, version=version, definition=definition, created_at=now
            )
        )

    def definition(self, automation_id: int, version: int) -> dict[str, Any] | None:
        return self.conn.execute(
            select(automation_versions.c.definition).where(
                automation_versions.c.automation_id == automation_id,
                automation_versions.c.version == version,
            )
        ).scalar()

    def versions(self, automation_id: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(automation_versions)
                .where(automation_versions.c.automation_id == automation_id)
                .order_by(automation_versions.c.version)
            )
        )

    def versions_in_use(self, workspace_id: int) -> list[tuple[int, int]]:
        """(automation id, version) of every version with runs still inside or queued."""
        rows = self.conn.execute(
            select(runs.c.automation_id, runs.c.version)
            .where(runs.c.workspace_id == workspace_id, runs.c.status != "finished")
            .distinct()
        )
        return [(row.automation_id, row.version) for row in rows]

    # --- runs ------------------------------------------------------------------------------

    def add_runs(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert runs; their new ids in the order given."""
        if len(rows) <= 8:  # one INSERT … RETURNING per few rows is cheapest
            if not rows:
                return []
            result = self.conn.execute(
                insert(runs).returning(runs.c.id, sort_by_parameter_order=True), rows
            )
            return list(result.scalars())
        # Many: SQLAlchemy would send one INSERT … RETURNING per row on SQLite. Take the ids
        # first (the write lock is held on SQLite; a sequence hands them out on PostgreSQL),
        # then write every row in one executemany.
        if self.dialect == "sqlite":
            top = self.conn.execute(select(func.coalesce(func.max(runs.c.id), 0))).scalar_one()
            ids = list(range(top + 1, top + 1 + len(rows)))
        else:
            ids = bulk.next_ids(self.conn, runs, len(rows))
        bulk.append(self.conn, runs, [{"id": i, **row} for row, i in zip(rows, ids, strict=True)])
        return ids

    def any_due(self, now: datetime) -> bool:
        """Whether any run's timer is due (an unlocked look)."""
        return bool(self.conn.execute(select(due_clause(now))).scalar())

    def claim_due(self, now: datetime, limit: int) -> list[Any]:
        """Due runs, locked for this transaction; other workers skip them (PostgreSQL)."""
        stmt = _due_runs(self.dialect == "postgresql")
        return bulk.fetch(self.conn, stmt, {"now": now, "limit": limit})

    def save_runs(self, rows: list[dict[str, Any]]) -> None:
        """Write back runs after a tick. Each row has `id` and the columns to set (the same)."""
        bulk.update(self.conn, runs, "id", rows)

    def of_contacts(
        self,
        contact_ids: Iterable[int],
        statuses: tuple[str, ...] = ("active", "queued"),
        *,
        lock: bool = False,
    ) -> list[Any]:
        """These contacts' runs in these statuses; `lock`: locked for this transaction
        (PostgreSQL), for a caller that changes them while a peer may be claiming them."""
        ids = list(contact_ids)
        out: list[Any] = []
        stmt = _runs_of_contacts(lock and self.dialect == "postgresql", self.dialect == "sqlite")
        for start in range(0, len(ids), 500):
            params = {"ids": ids[start : start + 500], "statuses": list(statuses)}
            out += bulk.fetch(self.conn, stmt, params)
        return out

    def entries_of(self, contact_ids: Iterable[int], automation_ids: Iterable[int]) -> list[Any]:
        """(automation_id, contact_id, entered_at) of every run of these contacts in these
        automations, finished or not: what repeat rules and daily limits count."""
        ids, wanted = list(contact_ids), list(automation_ids)
        out: list[Any] = []
        if not wanted:
            return out
        for start in range(0, len(ids), 500):
            params = {"ids": ids[start : start + 500], "automations": wanted}
            out += bulk.fetch(self.conn, _ENTRIES_OF, params)
        return out

    def recent_triggers(
        self, automation_id: int, contact_ids: list[int], since: datetime
    ) -> set[tuple[int, str]]:
        """(contact, trigger date) of runs entered since `since`: one entry per occurrence."""
        found: set[tuple[int, str]] = set()
        for start in range(0, len(contact_ids), 500):
            for row in self.conn.execute(
                select(runs.c.contact_id, runs.c.trigger).where(
                    runs.c.automation_id == automation_id,
                    runs.c.entered_at >= since,
                    runs.c.contact_id.in_(contact_ids[start : start + 500]),
                )
            ):
                if isinstance(row.trigger, dict) and row.trigger.get("date"):
                    found.add((row.contact_id, row.trigger["date"]))
        return found

    def node_counts(self, automation_id: int) -> list[Any]:
        """Per node: runs waiting there now."""
        return list(
            self.conn.execute(
                select(runs.c.node, func.count())
                .where(runs.c.automation_id == automation_id, runs.c.status == "active")
                .group_by(runs.c.node)
            )
        )

    def positions(self, automation_id: int) -> list[RunPositionRecord]:
        """Per (version, node): active runs there now (what a live edit shows)."""
        stmt = (
            select(runs.c.version, runs.c.node, func.count())
            .where(runs.c.automation_id == automation_id, runs.c.status == "active")
            .group_by(runs.c.version, runs.c.node)
            .order_by(runs.c.version, runs.c.node)
        )
        return [RunPositionRecord(v, n or "", c) for v, n, c in self.conn.execute(stmt)]

    def move_runs(
        self,
        automation_id: int,
        from_version: int,
        from_node: str,
        to_version: int,
        to_node: str,
        now: datetime,
        reason: dict[str, Any],
    ) -> list[MovedRunRecord]:
        """Move every active run at (from_version, from_node) to `to_node` of `to_version`,
        due now with no state, and log a `moved` step for each (in the caller's transaction).

        Runs are locked as the engine locks them (FOR UPDATE in id order on PostgreSQL, waiting
        for a worker's tick that holds one; SQLite has one writer at a time): a run a worker
        advanced meanwhile no longer matches and is not moved, one it left there is moved once.
        """
        where = (
            runs.c.automation_id == automation_id,
            runs.c.version == from_version,
            runs.c.node == from_node,
            runs.c.status == "active",
        )
        if self.dialect == "postgresql":
            ids = list(
                self.conn.execute(
                    select(runs.c.id).where(*where).order_by(runs.c.id).with_for_update()
                ).scalars()
            )
        else:
            ids = list(self.conn.execute(select(runs.c.id).where(*where)).scalars())
        moved: list[MovedRunRecord] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            result = self.conn.execute(
                update(runs)
                .where(runs.c.id.in_(chunk), *where)
                .values(
                    version=to_version,
                    node=to_node,
                    state={},
                    wake_at=now,
                    steps=runs.c.steps + 1,
                )
                .returning(runs.c.id, runs.c.contact_id, runs.c.workspace_id)
            )
            rows = result.all()
            moved += [MovedRunRecord(r.id, r.contact_id) for r in rows]
            bulk.insert(
                self.conn,
                steps,
                [
                    {
                        "workspace_id": r.workspace_id,
                        "run_id": r.id,
                        "contact_id": r.contact_id,
                        "automation_id": automation_id,
                        "version": to_version,
                        "node": to_node,
                        "outcome": "moved",
                        "reason": reason,
                        "at": now,
                    }
                    for r in rows
                ],
            )
        return moved

    def outcome_counts(self, automation_id: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(runs.c.status, runs.c.outcome, func.count())
                .where(runs.c.automation_id == automation_id)
                .group_by(runs.c.status, runs.c.outcome)
            )
        )

    # --- steps and the outbox ----------------------------------------------------------------

    def add_steps(self, rows: list[dict[str, Any]]) -> None:
        bulk.append(self.conn, steps, rows)

    def step_counts(self, automation_id: int) -> list[Any]:
        return list(
            self.conn.execute(
                select(steps.c.node, steps.c.outcome, func.count())
                .where(steps.c.automation_id == automation_id)
                .group_by(steps.c.node, steps.c.outcome)
            )
        )

    def timeline(
        self, workspace_id: int, contact_id: int, before_id: int | None, limit: int
    ) -> list[Any]:
        stmt = (
            select(steps, automations.c.key.label("automation"))
            .join(automations, automations.c.id == steps.c.automation_id)
            .where(steps.c.workspace_id == workspace_id, steps.c.contact_id == contact_id)
        )
        if before_id is not None:
            stmt = stmt.where(steps.c.id < before_id)
        return list(self.conn.execute(stmt.order_by(steps.c.id.desc()).limit(limit)))

    def add_messages(self, rows: list[dict[str, Any]]) -> None:
        bulk.append(self.conn, outbox, rows)


def day_ago(now: datetime) -> datetime:
    return now - timedelta(days=1)


@functools.cache
def _runs_of_contacts(lock: bool, sqlite: bool = False) -> Select[Any]:
    """`of_contacts`' statement, built once (`lock`: FOR UPDATE, in id order: PostgreSQL)."""
    # On SQLite the status is matched as an expression, not through an index: without
    # statistics SQLite guesses ~10 rows an equality, so two statuses looked cheaper than
    # hundreds of contacts and it read every active run by status (test_queue_plans.py).
    status = func.lower(runs.c.status) if sqlite else runs.c.status
    stmt = select(runs).where(
        runs.c.contact_id.in_(bindparam("ids", expanding=True)),
        status.in_(bindparam("statuses", expanding=True)),
    )
    return stmt.order_by(runs.c.id).with_for_update() if lock else stmt


@functools.cache
def _due_runs(skip_locked: bool) -> Select[Any]:
    """`claim_due`'s statement, built once (`skip_locked`: PostgreSQL's claim)."""
    stmt = (
        select(runs)
        .where(runs.c.status == "active", runs.c.wake_at <= bindparam("now"))
        .order_by(runs.c.wake_at, runs.c.id)
        .limit(bindparam("limit"))
    )
    return stmt.with_for_update(skip_locked=True) if skip_locked else stmt


_ENTRIES_OF = select(runs.c.automation_id, runs.c.contact_id, runs.c.entered_at).where(
    runs.c.contact_id.in_(bindparam("ids", expanding=True)),
    runs.c.automation_id.in_(bindparam("automations", expanding=True)),
)
