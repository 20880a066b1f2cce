"""Connecting to SQLite or PostgreSQL and running transactions the same way on both."""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)

from conveyor.domain.errors import InvalidInput

try:
    import fcntl
except ImportError:  # Windows: processes meet SQLite's busy handler
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")
log = logging.getLogger("conveyor.store")

# PostgreSQL error codes that mean "another transaction got there first; try again".
_RETRYABLE_PG = {"40001", "40P01", "23505"}
# Every PostgreSQL write transaction holds this advisory lock shared; a log consumer takes it
# exclusively for an instant to learn the highest event id below which all writers committed.
LOG_LOCK = 0x636F6E76
# Every writer of the event log holds it shared for its whole transaction (see `high_water`).
LOG_LOCK_SQL = f"SELECT pg_advisory_xact_lock_shared({LOG_LOCK})"


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """A value the database cannot hold (out of range, a NUL character) that slipped past
    validation is bad input, not a server error: the driver's DataError goes no further."""
    try:
        yield
    except DataError as exc:
        log.warning("database refused a value: %s", exc.orig)
        raise InvalidInput(
            "", "a value could not be stored (out of range, or a NUL character)"
        ) from exc


def normalize_url(url: str) -> str:
    """Accept plain postgresql:// URLs and pick the psycopg 3 driver for them."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    # Driver errors name the statement, never its values (message bodies, key hashes): they
    # end up in logs.
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            **kwargs,
        )
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(
        url, json_serializer=_json_dumps, json_deserializer=orjson.loads, **kwargs
    )
    event.listen(engine, "connect", _utc_session)
    return engine


def _utc_session(dbapi_connection: Any, _record: Any) -> None:
    """Sessions in UTC, whatever the server's TimeZone. psycopg gives each timestamptz it reads
    the session's zone: for `UTC` the fixed `datetime.UTC`, for any other name (Debian's
    servers say `Etc/UTC`) a ZoneInfo, which made reading times 1.6x slower and turning them to
    UTC (as the store does) 7x slower (README, Performance). Nothing in Conveyor's SQL depends
    on the session's zone; PgBouncer carries `TimeZone` across its server connections."""
    dbapi_connection.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()


def _json_dumps(value: Any) -> str:
    # orjson is several times faster than json on the ingest path (properties, contexts, fields).
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE can be issued below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A writer takes the lock up front: upgrading a read lock later can fail with SQLITE_BUSY.
        mode = conn.get_execution_options().get("conveyor_begin", "DEFERRED")
        if mode is not None:  # None: a peek, one statement in autocommit
            conn.exec_driver_sql(f"BEGIN {mode}")


class Checkpointer:
    """Copies SQLite's write-ahead log back into the database from a thread of its own, so that
    no writer does it inside its commit. With SQLite's default (a checkpoint by whichever commit
    takes the log past 1,000 pages) `benchmarks/ingest_writer.py` did 17,456 calls/s on a quiet
    machine and 8,486–8,870 at load 6–7 (the checkpoint's copying and fsync in the commit);
    with this thread, 20,708 and 16,763–17,608. A PASSIVE checkpoint takes no lock a writer or
    reader waits for, and the sqlite3 module lets go of the GIL while it runs."""

    INTERVAL = 0.25  # seconds between checkpoints; a quiet log makes each one a no-op

    def __init__(self, path: str) -> None:
        self._path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="conveyor-sqlite-checkpoint", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.wait(self.INTERVAL):
                try:
                    if conn is None:  # never creates the file (mode=rw)
                        uri = f"{Path(self._path).resolve().as_uri()}?mode=rw"
                        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # a file not there yet, a busy moment: next time
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WriterQueue:
    """Where SQLite writers wait for their turn: threads on a lock, processes on an flock of a
    file beside the database. SQLite's own busy handler polls with sleeps of up to 100 ms, so a
    process that writes back to back (the engine) starves the others; the kernel hands a
    released flock to a waiter at once."""

    def __init__(self, database: str | None) -> None:
        self._threads = threading.Lock()
        in_memory = not database or database == ":memory:" or "mode=memory" in database
        self._path = None if in_memory or fcntl is None else f"{database}-writer"
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._threads.acquire()
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._threads.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer does it


class Database:
    """The engine plus the rules for write transactions on each dialect."""

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.engine = make_engine(url, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self._writers = WriterQueue(self.engine.url.database) if self.is_sqlite else None
        self._checkpointer: Checkpointer | None = None
        path = self.engine.url.database
        if self.is_sqlite and path and path != ":memory:" and "mode=memory" not in path:
            event.listen(self.engine, "connect", _no_autocheckpoint)
            self._checkpointer = Checkpointer(str(Path(path).expanduser()))

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def write_connection(
        self, *, follow_log: bool = False, log_lock_later: bool = False
    ) -> Iterator[Connection]:
        """A write transaction. `follow_log`: a consumer of the event log's, which does not hold
        the writers' advisory lock from the start (PostgreSQL): it takes it with
        `high_water` once it knows it has work (see there). `log_lock_later`: the caller takes
        the writers' lock itself (`LOG_LOCK_SQL`) before it writes anything — the ingest writer
        sends it in the pipeline of its first look-ups, saving a round trip (PostgreSQL)."""
        with self._writers or contextlib.nullcontext(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn.execution_options(conveyor_begin="IMMEDIATE")
            with conn.begin():
                if not self.is_sqlite and not follow_log and not log_lock_later:
                    conn.exec_driver_sql(LOG_LOCK_SQL)
                yield conn

    def high_water(self, conn: Connection) -> int | None:
        """For a consumer of the event log, in its `follow_log` transaction: the id below which
        every event is committed (None on SQLite, where one writer at a time means everything
        the transaction can see is).

        Ids come from a sequence: on PostgreSQL a transaction can commit id 11 while id 10 is
        still in flight, and a consumer that moved its cursor past 11 would never see 10. Every
        write transaction holds an advisory lock shared; `conveyor_follow_log` (migration 0006)
        takes it exclusively for an instant — so every writer in flight has finished — reads the
        newest id with a fresh snapshot, lets go, and then holds it shared like any writer, all
        in one statement. A consumer asks only once it holds its cursors: one that would find
        them taken by a peer does not queue for the lock behind that peer's whole tick (and
        every writer after it).
        """
        if self.is_sqlite:
            return None
        return conn.exec_driver_sql(f"SELECT conveyor_follow_log({LOG_LOCK})").scalar_one()

    def steps_high_water(self, conn: Connection) -> int:
        """`high_water` for the step log (migration 0021_reports): the id below which every
        step is committed. In a `follow_log` transaction that has not asked `high_water`."""
        if self.is_sqlite:
            return int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) FROM steps").scalar_one())
        return int(conn.exec_driver_sql(f"SELECT conveyor_follow_steps({LOG_LOCK})").scalar_one())

    @contextlib.contextmanager
    def read_connection(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def peek_connection(self) -> Iterator[Connection]:
        """For one read statement: no transaction to begin or end (autocommit)."""
        with self.engine.connect() as conn:
            yield conn.execution_options(isolation_level="AUTOCOMMIT", conveyor_begin=None)

    def retrying(self, work: Callable[[], T], attempts: int = 8) -> T:
        """Run `work` (which opens its own transaction) again when it lost a race to a peer."""
        for attempt in range(attempts):
            try:
                return work()
            except (IntegrityError, OperationalError, DBAPIError) as exc:
                if attempt == attempts - 1 or not self._retryable(exc):
                    raise
                # Back off, with jitter, for up to about 1.3 s in all: long enough for a peer's
                # transaction to commit, short enough for a request to still answer.
                time.sleep(min(0.005 * 2**attempt, 0.5) * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _retryable(self, exc: DBAPIError) -> bool:
        if self.is_sqlite:
            return isinstance(exc, IntegrityError | OperationalError) and (
                isinstance(exc, IntegrityError) or "locked" in str(exc.orig)
            )
        code = getattr(exc.orig, "sqlstate", None)
        return code in _RETRYABLE_PG

    def pool_use(self) -> tuple[int, int]:
        """(connections checked out now, connections the pool holds open) in this process."""
        pool: Any = self.engine.pool
        in_use = pool.checkedout() if hasattr(pool, "checkedout") else 0
        return in_use, in_use + (pool.checkedin() if hasattr(pool, "checkedin") else 0)

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.engine.dispose()  # the last connection to close checkpoints what is left
        if self._writers is not None:
            self._writers.close()


def connection_problem(exc: BaseException) -> str | None:
    """One line saying why the database cannot be used, when `exc` is about that (a driver
    or URL error); None for anything else."""
    if isinstance(exc, DBAPIError | ArgumentError | NoSuchModuleError):
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return reason[0] if reason else type(exc).__name__
    return None


def shown_url(url: str | None) -> str:
    """A database URL as it may be shown: without its password."""
    if not url:
        return "(the default SQLite file)"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(an unreadable CONVEYOR_DATABASE_URL)"
