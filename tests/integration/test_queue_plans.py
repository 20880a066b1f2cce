"""The worker's looks at its queues stay index lookups on PostgreSQL, however big the tables.

psycopg prepares a statement on the server after its fifth run, and PostgreSQL then plans it
once for any parameter — a generic plan, which guesses that a third of the rows have
`wake_at <= $1`. With that guess the planner chose, for "is any run due?", a sequential scan of
`runs` (it expects to stop at the first match; when nothing is due, the common idle case, it
reads the whole table, on every worker poll), and for the claim of due runs, every due run read
and sorted to keep the first thousand. Measured on the engine benchmark's runs table (30,000
runs): 5 ms and 9 ms a statement, growing with the table; with the plans these tests require,
0.04 ms and 0.8 ms (README, Performance).

So each statement is planned here the way the server plans it after the fifth run (generic,
forced), over tables large enough for the planner to care, and its plan must reach `runs` and
`contact_scores` through an index, never by a scan of the whole table nor a sort of its rows.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from psycopg import sql
from sqlalchemy import create_engine

from conveyor.store import automations, bulk, messages, scoring
from conveyor.store.work import _look

ROWS = 20_000
WAITING = {
    "key": "waiting",
    "triggers": [{"event": "signed_up"}],
    "nodes": [{"id": "pause", "type": "wait", "for": "1 day"}],
}


def generic_plan(url: str, stmt: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The plan PostgreSQL uses for `stmt` once psycopg has prepared it: the statement is
    prepared on the server as psycopg sends it, then explained with a generic plan forced."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            state = stmt.compile(dialect=conn.dialect).construct_expanded_state(params)
            text, values = state.statement, state.parameters
            order = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))  # psycopg's $1, $2…
            raw = conn.connection.dbapi_connection
            raw.execute(text, values, prepare=True)
            (name,) = raw.execute(
                "SELECT name FROM pg_prepared_statements WHERE NOT from_sql"
                " ORDER BY prepare_time DESC LIMIT 1"
            ).fetchone()
            raw.execute("SET plan_cache_mode = force_generic_plan")
            explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE {}({})").format(
                sql.Identifier(name), sql.SQL(", ").join(sql.Literal(values[k]) for k in order)
            )
            ((plan,),) = raw.execute(explain).fetchall()
            raw.execute("RESET plan_cache_mode")
            return plan[0]["Plan"]
    finally:
        engine.dispose()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(n for child in plan.get("Plans", ()) for n in nodes(child))]


def scans(plan: dict[str, Any]) -> dict[str, set[str]]:
    """Each relation of the plan, with how it is read."""
    out: dict[str, set[str]] = {}
    for node in nodes(plan):
        if "Relation Name" in node:
            out.setdefault(node["Relation Name"], set()).add(node["Node Type"])
    return out


@pytest.fixture
def big_tables(conveyor, database_url) -> str:
    """ROWS contacts, each with a run waiting a day and a decaying score, analysed."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite plans each statement when it runs: no generic plans")
    workspace, _ = conveyor.workspaces.create("plans")
    conveyor.automations.apply(workspace, WAITING)
    conveyor.automations.set_status(workspace, "waiting", "active")
    later = conveyor.clock.now() + timedelta(days=1)
    engine = create_engine(database_url)
    with engine.begin() as conn:
        raw = conn.connection.dbapi_connection
        (automation_id,) = raw.execute("SELECT id FROM automations").fetchone()
        raw.execute(
            "INSERT INTO contacts (workspace_id, score, fields, created_at, updated_at)"
            " SELECT %s, 0, '{}', now(), now() FROM generate_series(1, %s)",
            (workspace.id, ROWS),
        )
        raw.execute(
            "INSERT INTO runs (workspace_id, automation_id, version, contact_id, status, node,"
            " state, wake_at, steps, trigger, entered_at)"
            " SELECT workspace_id, %s, 1, id, 'active', 'pause', '{}', %s, 1, '{}', now()"
            " FROM contacts",
            (automation_id, later),
        )
        raw.execute(
            "INSERT INTO contact_scores (contact_id, score, workspace_id, norm, fixed,"
            " checked_at, cross_at) SELECT id, 'engagement', workspace_id, 1, 0, now(), %s"
            " FROM contacts",
            (later,),
        )
    with engine.connect() as conn:
        conn.connection.dbapi_connection.execute("ANALYZE contacts, runs, contact_scores")
    engine.dispose()
    return database_url


def assert_indexed(plan: dict[str, Any], *tables: str) -> None:
    found = scans(plan)
    for table in tables:
        assert found.get(table), f"{table} is not read: {found}"
        assert "Seq Scan" not in found[table], f"{table} read whole: {found}"


def test_the_look_at_all_queues_reads_runs_and_scores_through_their_indexes(
    conveyor, big_tables
):
    plan = generic_plan(
        big_tables, _look(tuple(conveyor.engine.log.names)), {"now": conveyor.clock.now()}
    )
    assert_indexed(plan, "runs", "contact_scores")


def test_any_due_alone_reads_runs_and_scores_through_their_indexes(conveyor, big_tables):
    from sqlalchemy import select

    now = conveyor.clock.now()
    assert_indexed(generic_plan(big_tables, select(automations.due_clause(now)), {}), "runs")
    assert_indexed(
        generic_plan(big_tables, select(scoring.due_clause(now)), {}), "contact_scores"
    )


def test_the_claim_of_due_runs_takes_them_in_order_from_the_index_without_sorting(
    conveyor, big_tables
):
    """All ROWS runs due: the claim reads its thousand from the index, in (wake_at, id) order,
    instead of reading and sorting every due run."""
    plan = generic_plan(
        big_tables,
        automations._due_runs(skip_locked=True),
        {"now": conveyor.clock.now() + timedelta(days=2), "limit": 1000},
    )
    assert_indexed(plan, "runs")
    assert not [n for n in nodes(plan) if "Sort" in n["Node Type"]], plan


def test_sqlite_finds_the_runs_of_a_ticks_contacts_through_the_contact_index(
    conveyor, database_url
):
    """SQLite plans without statistics, guessing ~10 rows an equality: given `contact_id IN
    (hundreds) AND status IN ('active', 'queued')` it chose the status index — every active
    run read, for each tick. The status is matched as an expression there."""
    if not database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL plans with its statistics (above)")
    stmt = automations._runs_of_contacts(False, sqlite=True)
    with conveyor.store.db.read_connection() as conn:
        sql = bulk._reading(stmt, conn.dialect).arrays
        plan = conn.exec_driver_sql(
            f"EXPLAIN QUERY PLAN {sql}", ("[1, 2]", '["active", "queued"]')
        ).all()
    steps = [row[3] for row in plan]
    assert any("ix_runs_contact_automation" in step for step in steps), steps


@pytest.fixture
def big_outbox(conveyor, database_url) -> str:
    """A newsletter's ROWS messages pending and due, a hundred sent before them, analysed."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite plans each statement when it runs: no generic plans")
    now = conveyor.clock.now()
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.connection.dbapi_connection.execute(
            "INSERT INTO outbox (workspace_id, channel, contact_id, message_class, payload,"
            " idempotency_key, status, created_at, send_after)"
            " SELECT 1, 'email', g, 'marketing', '{}', 'k' || g,"
            " CASE WHEN g <= 100 THEN 'sent' ELSE 'pending' END, %s, %s"
            " FROM generate_series(1, %s) g",
            (now, now - timedelta(minutes=1), ROWS + 100),
        )
    with engine.connect() as conn:
        conn.connection.dbapi_connection.execute("ANALYZE outbox")
    engine.dispose()
    return database_url


def test_the_claim_of_due_messages_reads_them_in_order_from_an_index_without_sorting(
    conveyor, big_outbox
):
    """A newsletter puts its whole audience in the outbox at once. Each claim takes the next
    few hundred in (priority, send_after, id) order from an index, instead of reading and
    sorting every due message (13 ms a claim at 20,000, growing with the audience)."""
    now = conveyor.clock.now()
    for stmt in messages._claims(skip_locked=True):
        plan = generic_plan(big_outbox, stmt, {"now": now, "limit": 500})
        assert_indexed(plan, "outbox")
        assert not [n for n in nodes(plan) if "Sort" in n["Node Type"]], plan


def test_any_due_message_is_an_index_lookup(conveyor, big_outbox):
    plan = generic_plan(big_outbox, messages._any_due(), {"now": conveyor.clock.now()})
    assert_indexed(plan, "outbox")
