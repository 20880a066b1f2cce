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

import os
import sqlite3
import sys
import time
from typing import Any

import psycopg
from common import database
from sqlalchemy import JSON, Table, create_engine

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from conveyor.store.schema import automations, contacts, events, outbox, runs, steps, workspaces

CHUNK = 5_000
PARENTS = (workspaces, automations, contacts)  # what the runs refer to (copied untimed)
WRITTEN = (runs, steps, events, outbox)  # what the engine wrote (timed); ids: runs' only

Rows = tuple[Table, list[str], list[tuple[Any, ...]]]


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
    return table, names, rows


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


def raw_writes(dialect: str, parents: list[Rows], written: list[Rows]) -> float:
    """Seconds to write `written` with the driver alone into a fresh database of Conveyor's
    schema that holds `parents` (written first, untimed)."""
    with database(dialect, "engine_ceiling") as (url, _env):
        if dialect == "sqlite":
            os.makedirs(os.path.dirname(url.removeprefix("sqlite:///")), exist_ok=True)
        made = bootstrap(Settings(database_url=url, data_dir=os.path.dirname(url[10:]) or "."))
        made.upgrade_schema()
        made.close()
        write = _sqlite if dialect == "sqlite" else _postgresql
        target = url.removeprefix("sqlite:///") if dialect == "sqlite" else url
        write(target.replace("postgresql+psycopg", "postgresql"), parents)
        return write(target.replace("postgresql+psycopg", "postgresql"), written)


def _sqlite(path: str, tables: list[Rows]) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")  # as Conveyor's engine sets them (store/database.py)
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for table, names, rows in tables:
        columns = ", ".join(f'"{n}"' for n in names)
        sql = f"INSERT INTO {table.name} ({columns}) VALUES ({', '.join('?' * len(names))})"
        for i in range(0, len(rows), CHUNK):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[i : i + CHUNK])
            conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def _postgresql(url: str, tables: list[Rows]) -> float:
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for table, names, rows in tables:
            columns = ", ".join(f'"{n}"' for n in names)
            for i in range(0, len(rows), CHUNK):
                with conn.cursor().copy(f"COPY {table.name} ({columns}) FROM STDIN") as copy:
                    for row in rows[i : i + CHUNK]:
                        copy.write_row(row)
                conn.commit()
        return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit("imported by benchmarks/engine.py")
