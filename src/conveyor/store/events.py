"""SQL for the append-only event log and its consumers' cursors."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)

from conveyor.store import bulk
from conveyor.store.records import EventRecord
from conveyor.store.schema import events, log_cursors, workspaces


def behind_clause(names: list[str]) -> ColumnElement[bool]:
    """True when the log holds events past any of these cursors (a cursor not made yet is at
    the start); for `behind` and the worker's one look at all its queues (`store/work.py`)."""
    lowest = (
        select(func.min(log_cursors.c.position))
        .where(log_cursors.c.name.in_(names))
        .scalar_subquery()
    )
    known = select(func.count()).where(log_cursors.c.name.in_(names)).scalar_subquery()
    latest = select(func.max(events.c.id)).scalar_subquery()
    return and_(latest.is_not(None), or_(known < len(names), latest > lowest))


class EventQueries:
    def __init__(self, conn: Connection, dialect: str = "sqlite") -> None:
        self.conn = conn
        self.dialect = dialect

    def seen_message_ids(self, workspace_id: int, message_ids: Iterable[str]) -> set[str]:
        rows = bulk.select_in(
            self.conn,
            events,
            ("message_id",),
            "message_id",
            list(message_ids),
            workspace_id=workspace_id,
        )
        return {row[0] for row in rows}

    def message_ids_lookup(self, workspace_id: int, message_ids: Iterable[str]) -> bulk.Lookup:
        """`seen_message_ids` as a look-up to pipeline with others (`bulk.pipelined`); each
        row's first value is a message id seen."""
        return bulk.Lookup(events, ("message_id",), "message_id", list(message_ids), workspace_id)

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Append events in the given order; the log's ids grow in that order."""
        bulk.append(self.conn, events, rows)

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

    # --- consumers' cursors ------------------------------------------------------------------

    def behind(self, names: list[str]) -> bool:
        """Whether the log holds events past any of these cursors (one cheap, unlocked look)."""
        return bool(self.conn.execute(select(behind_clause(names))).scalar())

    def cursors(self, names: list[str]) -> dict[str, int]:
        """The positions of these cursors, locked until the transaction ends; a cursor another
        process holds (PostgreSQL) is left out, so its consumer skips this round."""
        stmt = select(log_cursors.c.name, log_cursors.c.position).where(
            log_cursors.c.name.in_(names)
        )
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        found = {name: position for name, position in self.conn.execute(stmt)}
        missing = [n for n in names if n not in found]
        if missing:  # new consumers start at 0; one held by another process stays skipped
            self._create(missing)
            again = self.conn.execute(stmt.where(log_cursors.c.name.in_(missing)))
            found.update({name: position for name, position in again})
        return found

    def _create(self, names: list[str]) -> None:
        rows = [{"name": n, "position": 0} for n in names]
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            self.conn.execute(pg_insert(log_cursors).on_conflict_do_nothing(), rows)
        else:
            self.conn.execute(insert(log_cursors).prefix_with("OR IGNORE"), rows)

    def after(self, position: int, up_to: int | None, limit: int) -> list[Any]:
        """The log past `position`, up to `up_to` (None: all of it), oldest first; each event
        with its workspace's `catalog_version` (so a consumer knows if what it keeps is current)."""
        stmt = _after_statement(up_to is not None)
        params = {"position": position, "up_to": up_to, "limit": limit}
        return bulk.fetch(self.conn, stmt, params)

    def latest_id(self) -> int:
        return int(self.conn.execute(select(func.max(events.c.id))).scalar_one() or 0)

    def position(self, name: str) -> int:
        """A cursor's position, locked until the transaction ends (a recompute's view of what
        its consumer has done)."""
        self.cursors([name])
        stmt = select(log_cursors.c.position).where(log_cursors.c.name == name)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return int(self.conn.execute(stmt).scalar_one())

    def move_cursors(self, names: list[str], position: int) -> None:
        self.conn.execute(
            update(log_cursors).where(log_cursors.c.name.in_(names)).values(position=position)
        )

    # --- replaying (the simulator reads the log; it never moves a cursor) --------------------

    def position_at(self, workspace_id: int, moment: datetime) -> int:
        """The id of the workspace's last event received before `moment` (0: none): where a
        replay from `moment` starts."""
        found = self.conn.execute(
            select(func.max(events.c.id)).where(
                events.c.workspace_id == workspace_id, events.c.received_at < moment
            )
        ).scalar()
        return int(found or 0)

    def replay(
        self,
        workspace_id: int,
        after_id: int,
        up_to_id: int,
        limit: int,
        part: tuple[int, int] | None = None,
    ) -> list[EventRecord]:
        """The workspace's events in (after_id, up_to_id], oldest first, at most `limit`: one
        chunk of a replay (the caller asks again from the last id it got). `part` (p, n): only
        the events of contacts whose id is p modulo n (those of no contact go to part 0)."""
        stmt = replay_query(workspace_id, after_id, up_to_id, limit, part)
        return [EventRecord.from_row(row) for row in self.conn.execute(stmt)]

    def of_contacts(
        self,
        contact_ids: Iterable[int],
        names: Iterable[str],
        *,
        after_id: int | None = None,
        up_to_id: int | None = None,
    ) -> list[EventRecord]:
        """These contacts' events of these names, in log order, optionally within (after_id,
        up_to_id]: a contact's history before a replay starts, or its changes since."""
        ids, wanted = sorted(set(contact_ids)), sorted(set(names))
        out: list[EventRecord] = []
        if not ids or not wanted:
            return out
        for start in range(0, len(ids), 500):
            stmt = select(events).where(
                events.c.contact_id.in_(ids[start : start + 500]), events.c.name.in_(wanted)
            )
            if after_id is not None:
                stmt = stmt.where(events.c.id > after_id)
            if up_to_id is not None:
                stmt = stmt.where(events.c.id <= up_to_id)
            out += [EventRecord.from_row(row) for row in self.conn.execute(stmt)]
        out.sort(key=lambda e: e.id)
        return out


def replay_query(
    workspace_id: int, after_id: int, up_to_id: int, limit: int, part: tuple[int, int] | None
) -> Select[Any]:
    """`EventQueries.replay`'s statement. The workspace is compared as an expression
    (`workspace_id + 0`) so that no index on it is usable: the planner then walks the primary
    key's range in order and stops at `limit`. With the (workspace, name, timestamp) index
    SQLite read and sorted the workspace's whole log for every chunk (0.26 s a chunk at 700,000
    events, 0.008 s walking the key) — a replay's reads grew with the square of its log."""
    stmt = (
        select(events)
        .where(
            events.c.workspace_id + 0 == workspace_id,
            events.c.id > after_id,
            events.c.id <= up_to_id,
        )
        .order_by(events.c.id)
        .limit(limit)
    )
    if part is not None:
        p, n = part
        mine = events.c.contact_id % n == p
        stmt = stmt.where(or_(mine, events.c.contact_id.is_(None)) if p == 0 else mine)
    return stmt


@functools.cache
def _after_statement(bounded: bool) -> Select[Any]:
    """`EventQueries.after`'s statement, built once (each pass over the log asks it)."""
    stmt = (
        select(
            events.c.id,
            events.c.workspace_id,
            events.c.contact_id,
            events.c.kind,
            events.c.name,
            events.c.properties,
            # Of the context only what the consumers ask (who wrote a system event): an SDK's
            # context (page, user agent, library, …) is most of a row, and none of theirs.
            events.c.context["source"].as_string().label("source"),
            workspaces.c.catalog_version,
            events.c.timestamp,
            events.c.request_id,
        )
        .join(workspaces, workspaces.c.id == events.c.workspace_id)
        .where(events.c.id > bindparam("position"))
        .order_by(events.c.id)
        .limit(bindparam("limit"))
    )
    return stmt.where(events.c.id <= bindparam("up_to")) if bounded else stmt
