"""What the engine benchmark compares Conveyor's engine with, in the same run: the rows the
engine left — its runs, steps, events and outbox messages — written again with the driver alone
into a fresh database of Conveyor's schema and indexes (`sqlite3.executemany`, psycopg `COPY`),
a commit per 5,000 rows of a table (a tick of 1,000 runs writes about that many).

It is a ceiling, not a model of the engine: the engine also reads (contacts, runs, events for its
conditions), updates each run and contact as it moves, and deletes tags; the ceiling only writes
the final rows once. A contact-steps/s figure at this ceiling is what an engine that did nothing
but write its output could reach on this machine and database.
"""

from __future__ import annotations

import sys

from common import log
from raw_writes import Rows, raw_writes
from sqlalchemy import JSON, Table, create_engine

from conveyor.store.schema import automations, contacts, events, outbox, runs, steps, workspaces

CHUNK = 5_000
PARENTS = (workspaces, automations, contacts)  # what the runs refer to (copied untimed)


def rows_of(url: str, table: Table, where: str = "", *, with_id: bool) -> Rows:
    """A table's rows as stored (JSON as text), in id order, without `id` unless `with_id`."""
    engine = create_engine(url)
    names = [c.name for c in table.columns if with_id or c.name != "id"]
    pg = engine.dialect.name == "postgresql"
    shown = [
        f'"{c.name}"::text' if pg and isinstance(c.type, JSON) else f'"{c.name}"'
        for c in table.columns
        if c.name in names
    ]
    sql = f"SELECT {', '.join(shown)} FROM {table.name} {where} ORDER BY id"
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.exec_driver_sql(sql)]
    engine.dispose()
    return table.name, names, rows


def engine_rows(url: str, event_ids: list[tuple[int, int]]) -> tuple[list[Rows], list[Rows]]:
    """(parents, written): the rows the engine's runs refer to, and the rows it wrote; its
    events are those with ids in `event_ids` (first, last] — the timed phases'."""
    parents = [rows_of(url, t, with_id=True) for t in PARENTS]
    spans = " OR ".join(f"(id > {lo} AND id <= {hi})" for lo, hi in event_ids) or "false"
    written = [
        rows_of(url, runs, with_id=True),
        rows_of(url, steps, with_id=False),
        rows_of(url, events, f"WHERE {spans}", with_id=False),
        rows_of(url, outbox, with_id=False),
    ]
    return parents, written


def engine_ceiling(dialect: str, url: str, event_ids: list[tuple[int, int]]) -> float:
    """Seconds to write the rows the engine left in `url` (its events: those with ids in
    `event_ids`) into a fresh database that holds what they refer to."""
    parents, written = engine_rows(url, event_ids)
    log.print(
        f"{dialect}: the engine's rows written raw: "
        + ", ".join(f"{len(rows):,} {table}" for table, _, rows in written),
        highlight=False,
    )
    return raw_writes(dialect, written, before=parents, chunk=CHUNK)[0]


if __name__ == "__main__":
    sys.exit("imported by benchmarks/engine.py")
