"""SQLite writers in different processes (serve and its worker) wait for each other in the
writer queue's flock, handed on at release, not in SQLite's polling busy handler."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor.store.database import Database

CHILD = """
import sys
from conveyor.store.database import Database
db = Database(sys.argv[1])
with db.write_connection() as conn:
    conn.exec_driver_sql("INSERT INTO t VALUES (2)")
db.dispose()
"""


def flock_waiters(path: Path) -> int:
    """Processes blocked on an flock of `path`, from the kernel's table of locks."""
    inode = f":{os.stat(path).st_ino} "
    with open("/proc/locks") as locks:
        return sum("->" in line and "FLOCK" in line and inode in line for line in locks)


@pytest.mark.skipif(not os.path.exists("/proc/locks"), reason="needs Linux's /proc/locks")
def test_a_writer_in_another_process_waits_in_the_queue_then_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    db = Database(url)
    with db.write_connection() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with db.write_connection() as conn:
        conn.exec_driver_sql("INSERT INTO t VALUES (1)")
        child = subprocess.Popen([sys.executable, "-c", CHILD, url], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while not flock_waiters(tmp_path / "queue.db-writer"):
            assert child.poll() is None and time.monotonic() < deadline, "the child never queued"
            time.sleep(0.02)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr.decode()
    with db.read_connection() as conn:
        assert [x for (x,) in conn.exec_driver_sql("SELECT x FROM t ORDER BY rowid")] == [1, 2]
    db.dispose()
