"""SQL for reports: the daily rollups (added to, summed), the overview's coarser rollup, what
they remember of each message, and the funnel folded from the step log."""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from conveyor.domain.reports import StepFact, funnel_counts
from conveyor.store import bulk
from conveyor.store.records import FunnelNodeRecord, ReportFigure, ReportMessageRecord
from conveyor.store.schema import (
    automations,
    report_daily,
    report_funnel,
    report_messages,
    report_overview,
    report_progress,
    report_totals,
    steps,
    workspaces,
)

_CHUNK = 500
DIMENSIONS = ("automation", "node", "template", "template_version", "channel", "campaign")
_KEY = ("workspace_id", "day", *DIMENSIONS, "metric")
_FLAGS = ("opened", "clicked", "opened_any", "clicked_any")
# The overview's rollup keeps only these dimensions (see schema.report_overview).
OVERVIEW = ("automation", "channel")
_OVERVIEW_KEY = ("workspace_id", "day", *OVERVIEW, "metric")
_TOTALS_KEY = ("workspace_id", "day", "metric")
_FUNNEL_KEY = ("workspace_id", "automation", "day", "node")
STEPS = "steps"  # report_progress: how far the step log is folded


def steps_behind_clause() -> ColumnElement[bool]:
    """True when the step log holds steps past the fold's position."""
    position = (
        select(report_progress.c.position).where(report_progress.c.name == STEPS).scalar_subquery()
    )
    latest = select(func.max(steps.c.id)).scalar_subquery()
    return and_(latest.is_not(None), latest > func.coalesce(position, 0))


class ReportQueries:
    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def _insert(self, table: Any) -> Any:
        return _insert(table, self.dialect)

    # --- the consumer's writes ---------------------------------------------------------------

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        """Add each row's `value` to its (workspace, day, dimensions, metric), and to the
        overview's (workspace, day, automation, channel, metric) and (workspace, day, metric):
        an upsert each."""
        if not rows:
            return
        self._upsert_adding(report_daily, _KEY, ("value",), rows)
        for table, key in ((report_overview, _OVERVIEW_KEY), (report_totals, _TOTALS_KEY)):
            coarse: dict[tuple[Any, ...], int] = defaultdict(int)
            for r in rows:
                coarse[tuple(r[k] for k in key)] += r["value"]
            self._upsert_adding(
                table,
                key,
                ("value",),
                [dict(zip(key, k, strict=True), value=v) for k, v in coarse.items()],
            )

    def _upsert_adding(
        self,
        table: Any,
        key: Sequence[str],
        columns: Sequence[str],
        rows: Sequence[dict[str, Any]],
    ) -> None:
        stmt = _upsert_adding(table, tuple(key), tuple(columns), self.dialect)
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
        named = (*by, *(where or {}))
        for name in named:
            if name not in DIMENSIONS:
                raise ValueError(f"unknown report dimension {name!r}")
        # A coarser rollup has the same sums over fewer rows when it has every dimension.
        if not named:
            t = report_totals.c
        elif all(n in OVERVIEW for n in named):
            t = report_overview.c
        else:
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

    def funnel(
        self, workspace_id: int, automation: str, first_day: str, last_day: str
    ) -> list[FunnelNodeRecord]:
        """Per node: the runs that reached it on days first..last, and of those the runs that
        reached a goal at or after it (folded from the step log by `fold_steps`)."""
        f = report_funnel.c
        stmt = (
            select(f.node, func.sum(f.reached), func.sum(f.converted))
            .where(
                f.workspace_id == workspace_id,
                f.automation == automation,
                f.day >= first_day,
                f.day <= last_day,
            )
            .group_by(f.node)
        )
        return [FunnelNodeRecord(r[0], int(r[1]), int(r[2])) for r in self.conn.execute(stmt)]

    # --- the step log's fold (the funnel) ----------------------------------------------------

    def steps_position(self) -> int | None:
        """The step log's fold position, locked until the transaction ends; None when another
        process holds it (PostgreSQL): that process is folding these steps."""
        stmt = select(report_progress.c.position).where(report_progress.c.name == STEPS)
        if self.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        found = self.conn.execute(stmt).scalar()
        if found is None:  # the row is made once (0021_reports); a peer may hold it
            made = self._insert(report_progress).values(name=STEPS, position=0)
            self.conn.execute(made.on_conflict_do_nothing())
            found = self.conn.execute(stmt).scalar()
        return None if found is None else int(found)

    def steps_behind(self) -> bool:
        """Whether the step log holds steps past the fold's position (one cheap look)."""
        return bool(self.conn.execute(select(steps_behind_clause())).scalar())

    def last_step(self) -> int:
        return int(self.conn.execute(select(func.coalesce(func.max(steps.c.id), 0))).scalar_one())

    def fold_steps(self, after: int, up_to: int | None, limit: int) -> int:
        """Fold up to `limit` steps past `after` (to `up_to`, the committed high-water mark;
        None: all) into the funnel, and move the position; the last step id folded (`after`
        when there was none)."""
        params = {"after": after, "limit": limit, "up_to": up_to}
        page = bulk.fetch(self.conn, _steps_page(up_to is not None), params, row=StepFact)
        if not page:
            return after
        last = int(page[-1].id)
        batch = [r for r in page if r.run_id is not None]  # skipped entries: no run
        runs = sorted({f.run_id for f in batch})
        earlier: list[StepFact] = []
        for start in range(0, len(runs), _CHUNK):
            params = {"runs": runs[start : start + _CHUNK], "after": after}
            earlier += bulk.fetch(self.conn, _STEPS_BEFORE, params, row=StepFact)
        zones: dict[int, ZoneInfo] = {}
        days: dict[tuple[int, datetime], str] = {}

        def day_of(workspace_id: int, at: datetime) -> str:
            found = days.get((workspace_id, at))
            if found is None:
                zone = zones.get(workspace_id)
                if zone is None:
                    zone = zones[workspace_id] = self._zone(workspace_id)
                found = days[(workspace_id, at)] = at.astimezone(zone).date().isoformat()
            return found

        counts = funnel_counts(batch, earlier, day_of)
        keys = self._automation_keys({k[1] for k in counts})
        merged: dict[tuple[Any, ...], list[int]] = {}
        for (ws, automation_id, day, node), (reached, converted) in counts.items():
            key = (ws, keys.get(automation_id, f"#{automation_id}")[:64], day, node)
            pair = merged.setdefault(key, [0, 0])
            pair[0] += reached
            pair[1] += converted
        self._upsert_adding(
            report_funnel,
            _FUNNEL_KEY,
            ("reached", "converted"),
            [
                dict(zip(_FUNNEL_KEY, k, strict=True), reached=v[0], converted=v[1])
                for k, v in merged.items()
            ],
        )
        self._move_steps(last)
        return last

    def _move_steps(self, position: int) -> None:
        stmt = self._insert(report_progress).values(name=STEPS, position=position)
        stmt = stmt.on_conflict_do_update(
            index_elements=["name"], set_={"position": stmt.excluded.position}
        )
        self.conn.execute(stmt)

    def _zone(self, workspace_id: int) -> ZoneInfo:
        settings = self.conn.execute(
            select(workspaces.c.settings).where(workspaces.c.id == workspace_id)
        ).scalar()
        return ZoneInfo((settings or {}).get("timezone") or "UTC")

    def _automation_keys(self, ids: Iterable[int]) -> dict[int, str]:
        ids = list(ids)
        if not ids:
            return {}
        stmt = select(automations.c.id, automations.c.key).where(automations.c.id.in_(ids))
        return {int(r[0]): r[1] for r in self.conn.execute(stmt)}

    # --- for the recompute check and the benchmark -------------------------------------------

    def all_rows(self, workspace_id: int) -> dict[tuple[Any, ...], int]:
        """Every rollup row of the workspace, by (day, *dimensions, metric): value."""
        t = report_daily.c
        cols = [t.day, *(t[n] for n in DIMENSIONS), t.metric, t.value]
        stmt = select(*cols).where(t.workspace_id == workspace_id)
        return {tuple(r[:-1]): int(r[-1]) for r in self.conn.execute(stmt)}

    def overview_rows(self, workspace_id: int) -> dict[tuple[Any, ...], int]:
        """Every row of the overview's rollup, by (day, automation, channel, metric): value."""
        t = report_overview.c
        stmt = select(t.day, t.automation, t.channel, t.metric, t.value).where(
            t.workspace_id == workspace_id
        )
        return {tuple(r[:-1]): int(r[-1]) for r in self.conn.execute(stmt)}

    def totals_rows(self, workspace_id: int) -> dict[tuple[Any, ...], int]:
        """Every row of the overview's series rollup, by (day, metric): value."""
        t = report_totals.c
        stmt = select(t.day, t.metric, t.value).where(t.workspace_id == workspace_id)
        return {tuple(r[:-1]): int(r[-1]) for r in self.conn.execute(stmt)}

    def funnel_rows(self, workspace_id: int) -> dict[tuple[Any, ...], int]:
        """Every funnel figure, by (automation, day, node, "reached" | "converted"): value."""
        f = report_funnel.c
        stmt = select(f.automation, f.day, f.node, f.reached, f.converted).where(
            f.workspace_id == workspace_id
        )
        out: dict[tuple[Any, ...], int] = {}
        for automation, day, node, reached, converted in self.conn.execute(stmt):
            out[(automation, day, node, "reached")] = int(reached)
            out[(automation, day, node, "converted")] = int(converted)
        return out

    def logged_steps(self, workspace_id: int) -> list[StepFact]:
        """The workspace's whole step log, in order (the recompute check's raw input)."""
        s = steps.c
        stmt = (
            select(s.id, s.workspace_id, s.run_id, s.automation_id, s.node, s.outcome, s.at)
            .where(s.workspace_id == workspace_id)
            .order_by(s.id)
        )
        return [StepFact(*r) for r in self.conn.execute(stmt)]


@functools.cache
def _upsert_adding(table: Any, key: tuple[str, ...], columns: tuple[str, ...], dialect: str) -> Any:
    """The consumer's upsert adding `columns` on conflict over `key`, built once per table and
    dialect (constructing it cost more CPU than executing it)."""
    stmt = _insert(table, dialect)
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: table.c[c] + stmt.excluded[c] for c in columns}
    )


def _insert(table: Any, dialect: str) -> Any:
    """An INSERT with the dialect's ON CONFLICT."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


def _step_columns() -> tuple[Any, ...]:
    s = steps.c
    return (s.id, s.workspace_id, s.run_id, s.automation_id, s.node, s.outcome, s.at)


@functools.cache
def _steps_page(bounded: bool) -> Select[Any]:
    """The next steps to fold (`bounded`: up to the committed high-water mark), built once."""
    s = steps.c
    stmt = select(*_step_columns()).where(s.id > bindparam("after"))
    stmt = stmt.order_by(s.id).limit(bindparam("limit"))
    return stmt.where(s.id <= bindparam("up_to")) if bounded else stmt


_STEPS_BEFORE = select(*_step_columns()).where(
    steps.c.run_id.in_(bindparam("runs", expanding=True)), steps.c.id <= bindparam("after")
)
