"""A backtest reads the log in chunks along its primary key: each chunk's query walks the id
range in order and stops at its limit. Through an index on the workspace (SQLite's choice when
it could) every chunk read and sorted the workspace's whole log, and a replay's reads grew with
the square of its log (a 100,000-contact backtest spent most of its time there)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from conveyor.store.events import replay_query


@pytest.mark.parametrize("part", [None, (0, 2), (1, 2)])
def test_a_chunk_of_the_replay_walks_the_log_by_id(conveyor, part):
    workspace, _ = conveyor.workspaces.create("shop")
    stmt = replay_query(workspace.id, 10, 1_000_000, 5000, part)
    with conveyor.store.read() as tx:
        conn = tx.events.conn
        sql = str(stmt.compile(conn, compile_kwargs={"literal_binds": True}))
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:  # psycopg's compiler doubles `%` (the modulo), text() doubles it again
            sql = sql.replace("%%", "%")
        plan = " ".join(
            str(row[-1]) if sqlite else str(row[0])
            for row in conn.execute(text(("EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN ") + sql))
        )
        assert conn.execute(stmt).all() == []
    assert "workspace_name_timestamp" not in plan
    if sqlite:
        assert "INTEGER PRIMARY KEY" in plan and "TEMP B-TREE" not in plan
