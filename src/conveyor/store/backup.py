"""Backups of an SQLite database with SQLite's online backup API: a consistent copy while
serve and workers keep writing (in WAL mode the copy holds a read snapshot; writers go on).

PostgreSQL is backed up with its own tools (pg_dump / pg_restore; see the README)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from conveyor.domain.errors import InvalidInput
from conveyor.store.database import Database

COUNTED = ("workspaces", "contacts", "events", "runs", "steps", "outbox")


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    revision: str | None
    rows: dict[str, int]  # table → rows, for the tables in COUNTED


def sqlite_path(db: Database) -> Path:
    if not db.is_sqlite:
        raise InvalidInput(
            "", "backup and restore copy SQLite files; for PostgreSQL use pg_dump and pg_restore"
        )
    database = make_url(str(db.engine.url)).database
    if not database or database == ":memory:":
        raise InvalidInput("", "an in-memory database has nothing to back up")
    return Path(database)


def backup(db: Database, target: Path) -> BackupSummary:
    """Copy the live database to `target` (a new file), checked before it is reported."""
    sqlite_path(db)
    if target.exists():
        raise InvalidInput("", f"{target} exists; back up to a new file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    raw = db.engine.raw_connection()
    try:
        destination = sqlite3.connect(partial)
        try:
            raw.driver_connection.backup(destination)  # type: ignore[union-attr]
        finally:
            destination.close()
    finally:
        raw.close()
    summary = inspect(partial)
    partial.rename(target)  # a backup file is complete or absent
    return BackupSummary(target, summary.revision, summary.rows)


def inspect(path: Path) -> BackupSummary:
    """Check a backup file (integrity, a Conveyor schema) and count its rows."""
    if not path.is_file():
        raise InvalidInput("", f"{path}: no such file")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise InvalidInput("", f"{path}: not a Conveyor SQLite database ({exc})") from exc
        if check != "ok":
            raise InvalidInput("", f"{path}: damaged ({check})")
        rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in COUNTED}
    finally:
        conn.close()
    return BackupSummary(path, revision[0] if revision else None, rows)


def restore(db: Database, source: Path, *, replace: bool = False) -> BackupSummary:
    """Copy a backup file into this (SQLite) database. Nothing may be using the database: stop
    serve and the workers first. An existing database with workspaces is kept unless `replace`."""
    summary = inspect(source)
    target = sqlite_path(db)
    if target.exists() and not replace:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        try:
            used = (
                conn.execute(
                    "SELECT count(*) FROM sqlite_master WHERE name = 'workspaces'"
                ).fetchone()[0]
                and conn.execute("SELECT count(*) FROM workspaces").fetchone()[0]
            )
        finally:
            conn.close()
        if used:
            raise InvalidInput("", f"{target} holds data; pass --replace to overwrite it")
    db.dispose()
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # page by page into the target, its WAL included
    finally:
        dst.close()
        src.close()
    return summary
