"""SQL for reports: the daily rollups (added to, summed), what they remember of each message,
and the funnel read from the step log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from conveyor.store.records import FunnelNodeRecord, ReportFigure, ReportMessageRecord
from conveyor.store.schema import report_daily, report_messages, steps

_CHUNK = 500
DIMENSIONS = ("automation", "node", "template", "template_version", "channel", "campaign")
_KEY = ("workspace_id", "day", *DIMENSIONS, "metric")
_FLAGS = ("opened", "clicked", "opened_any", "clicked_any")


class ReportQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self.dialect == "postgresql" else sqlite_insert)(table)

    # --- the consumer's writes ---------------------------------------------------------------

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add each row's `value` to its (workspace, day, dimensions, metric): one upsert."""
        if not rows:
            return
        stmt = self._insert(report_daily)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_KEY), set_={"value": report_daily.c.value + stmt.excluded.value}
        )
        for start in range(0, len(rows), _CHUNK):
            self.conn.execute(stmt, list(rows[start : start + _CHUNK]))

    def messages(self, ids: Iterable[int]) -> list[ReportMessageRecord]:
        ids = list(ids)
        out = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            stmt = select(report_messages).where(report_messages.c.message_id.in_(chunk))
            out += [ReportMessageRecord.from_row(r) for r in self.conn.execute(stmt)]
        return out

    def touches(
        self, workspace_id: int, contact_ids: Iterable[int], since: datetime
    ) -> list[ReportMessageRecord]:
        """The contacts' messages sent, opened or clicked since `since`: what attribution
        may credit."""
        ids = list(contact_ids)
        out = []
        c = report_messages.c
        for start in range(0, len(ids), _CHUNK):
            stmt = select(report_messages).where(
                c.workspace_id == workspace_id,
                c.contact_id.in_(ids[start : start + _CHUNK]),
                or_(c.sent_at >= since, c.last_opened_at >= since, c.last_clicked_at >= since),
            )
            out += [ReportMessageRecord.from_row(r) for r in self.conn.execute(stmt)]
        return out

    def save_messages(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace these messages' rows (every column given)."""
        if not rows:
            return
        stmt = self._insert(report_messages)
        columns = [c.name for c in report_messages.columns if c.name != "message_id"]
        stmt = stmt.on_conflict_do_update(
            index_elements=["message_id"], set_={n: stmt.excluded[n] for n in columns}
        )
        for start in range(0, len(rows), _CHUNK):
            self.conn.execute(stmt, list(rows[start : start + _CHUNK]))

    # --- the reports' reads ------------------------------------------------------------------

    def figures(
        self,
        workspace_id: int,
        first_day: str,
        last_day: str,
        *,
        by: Sequence[str] = (),
        where: dict[str, Any] | None = None,
        per_day: bool = True,
    ) -> list[ReportFigure]:
        """Sums per day (or over the whole range: day ""), the dimensions in `by` and metric,
        over days first..last (inclusive), of the rows whose dimensions equal `where`'s."""
        for name in (*by, *(where or {})):
            if name not in DIMENSIONS:
                raise ValueError(f"unknown report dimension {name!r}")
        t = report_daily.c
        day = t.day if per_day else literal("").label("day")
        groups = [*(t[name] for name in by), t.metric]
        heads = [day, *groups]
        stmt = (
            select(*heads, func.sum(t.value))
            .where(t.workspace_id == workspace_id, t.day >= first_day, t.day <= last_day)
            .group_by(*([t.day] if per_day else []), *groups)
        )
        for name, value in (where or {}).items():
            stmt = stmt.where(t[name] == value)
        return [
            ReportFigure(r[0], tuple(r[1:-2]), r[-2], int(r[-1])) for r in self.conn.execute(stmt)
        ]

    def dimension_values(self, workspace_id: int, name: str) -> list[Any]:
        if name not in DIMENSIONS:
            raise ValueError(f"unknown report dimension {name!r}")
        column = report_daily.c[name]
        stmt = select(column).where(report_daily.c.workspace_id == workspace_id).distinct()
        return [r[0] for r in self.conn.execute(stmt)]

    def funnel(self, automation_id: int, start: datetime, end: datetime) -> list[FunnelNodeRecord]:
        """Per node: the runs that reached it in [start, end), and of those the runs that
        reached a goal at or after it."""
        s = steps.alias("s")
        g = steps.alias("g")
        goal_after = exists().where(
            g.c.run_id == s.c.run_id, g.c.outcome == "goal_reached", g.c.id >= s.c.id
        )
        stmt = (
            select(
                s.c.node,
                func.count(s.c.run_id.distinct()),
                func.count(s.c.run_id.distinct()).filter(goal_after),
            )
            .where(
                and_(
                    s.c.automation_id == automation_id,
                    s.c.run_id.is_not(None),
                    s.c.at >= start,
                    s.c.at < end,
                )
            )
            .group_by(s.c.node)
        )
        return [FunnelNodeRecord(r[0], int(r[1]), int(r[2])) for r in self.conn.execute(stmt)]

    # --- for the recompute check and the benchmark -------------------------------------------

    def all_rows(self, workspace_id: int) -> dict[tuple[Any, ...], int]:
        """Every rollup row of the workspace, by (day, *dimensions, metric): value."""
        t = report_daily.c
        cols = [t.day, *(t[n] for n in DIMENSIONS), t.metric, t.value]
        stmt = select(*cols).where(t.workspace_id == workspace_id)
        return {tuple(r[:-1]): int(r[-1]) for r in self.conn.execute(stmt)}
