"""The benchmarks' database ceiling: rows written with the driver alone (`sqlite3.executemany`,
psycopg `COPY`, a commit per `chunk` rows of a table) into a fresh database of Conveyor's schema
and indexes. benchmarks/ingest_ceilings.py writes the events a run ingested,
benchmarks/engine_ceiling.py the rows the engine left."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from common import database

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings

# A table's name, the columns given, and its rows in that order (JSON as text).
Rows = tuple[str, Sequence[str], Sequence[tuple[Any, ...]]]


def raw_writes(
    dialect: str, timed: Sequence[Rows], *, before: Sequence[Rows] = (), chunk: int = 1_000
) -> tuple[float, float | None]:
    """Seconds to write `timed` into a fresh database that holds `before` (written first,
    untimed), and the CPU seconds that took when the database runs in this process (SQLite)."""
    with database(dialect, "ceiling") as (url, _env):
        if dialect == "sqlite":
            os.makedirs(os.path.dirname(url.removeprefix("sqlite:///")), exist_ok=True)
        made = bootstrap(Settings(database_url=url, data_dir=os.path.dirname(url[10:]) or "."))
        made.upgrade_schema()
        made.close()
        if dialect == "sqlite":
            path = url.removeprefix("sqlite:///")
            _sqlite(path, before, chunk)
            cpu = time.process_time()
            seconds = _sqlite(path, timed, chunk)
            return seconds, time.process_time() - cpu
        dsn = url.replace("postgresql+psycopg", "postgresql")
        _postgresql(dsn, before, chunk)
        return _postgresql(dsn, timed, chunk), None


def _sqlite(path: str, tables: Sequence[Rows], chunk: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")  # as Conveyor sets them (store/database.py)
    conn.execute("PRAGMA synchronous=NORMAL")
    start = time.perf_counter()
    for table, names, rows in tables:
        columns = ", ".join(f'"{n}"' for n in names)
        sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(names))})"
        for i in range(0, len(rows), chunk):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, rows[i : i + chunk])
            conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def _postgresql(url: str, tables: Sequence[Rows], chunk: int) -> float:
    with psycopg.connect(url) as conn:
        start = time.perf_counter()
        for table, names, rows in tables:
            columns = ", ".join(f'"{n}"' for n in names)
            for i in range(0, len(rows), chunk):
                with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows[i : i + chunk]:
                        copy.write_row(row)
                conn.commit()
        return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit("imported by the benchmarks")
