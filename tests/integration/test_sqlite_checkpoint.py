"""SQLite's write-ahead log is copied back into the database by the Database's own thread,
never by a writer's commit."""

from __future__ import annotations

import os
import time

from sqlalchemy import text

from conveyor.store.database import Checkpointer, Database


def test_the_log_is_checkpointed_by_its_thread_not_by_commits(tmp_path):
    path = tmp_path / "c.db"
    db = Database(f"sqlite:///{path}")
    try:
        with db.write_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
            conn.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        before = os.path.getsize(path)
        with db.write_connection() as conn:  # ~2,000 pages: past SQLite's own threshold
            conn.execute(
                text("INSERT INTO t (v) VALUES (:v)"), [{"v": "x" * 4000} for _ in range(2000)]
            )
        assert os.path.getsize(path) == before  # the commit left it all in the log
        deadline = time.monotonic() + 20 * Checkpointer.INTERVAL + 5
        while os.path.getsize(path) < 2000 * 4000 and time.monotonic() < deadline:
            time.sleep(Checkpointer.INTERVAL / 2)
        assert os.path.getsize(path) >= 2000 * 4000  # the thread copied it back
        with db.read_connection() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2000
    finally:
        db.dispose()
    assert not any(t.name == "conveyor-sqlite-checkpoint" and t.is_alive() for t in _threads())


def _threads():
    import threading

    return threading.enumerate()


def test_the_checkpointer_never_creates_a_database(tmp_path):
    path = tmp_path / "gone.db"
    checkpointer = Checkpointer(str(path))
    time.sleep(Checkpointer.INTERVAL * 3)
    checkpointer.close()
    assert not path.exists()
