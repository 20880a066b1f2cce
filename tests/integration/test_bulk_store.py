"""The store's driver-level reads and writes (store/bulk.py) against both databases: they give
what SQLAlchemy would, and the many-row paths (COPY on PostgreSQL) behave like the one-row
ones."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError

from conveyor.store import bulk
from conveyor.store.schema import contact_tags, contacts, runs, steps


def _world(conveyor, count: int) -> tuple[int, int, list[int]]:
    """A workspace, an automation and `count` contacts: (workspace, automation, contacts)."""
    workspace, _ = conveyor.workspaces.create("bulk")
    nodes = [{"id": "a", "type": "add_tag", "tag": "t"}]
    conveyor.automations.apply(
        workspace, {"key": "k", "triggers": [{"event": "go"}], "nodes": nodes}
    )
    now = datetime(2026, 12, 2, tzinfo=UTC)
    made = [
        {"workspace_id": workspace.id, "email": f"p{i}@example.com", "fields": {},
         "score": 0, "created_at": now, "updated_at": now}
        for i in range(count)
    ]  # fmt: skip
    with conveyor.store.write() as tx:
        ids = tx.contacts.insert(made)
        automation = tx.automations.by_key(workspace.id, "k")
    return workspace.id, automation.id, ids


def _run(contact_id: int, at: datetime) -> dict:
    return {
        "workspace_id": 1, "automation_id": 1, "version": 1, "contact_id": contact_id,
        "status": "active", "node": "a", "state": {"n": contact_id, "s": "ü"}, "wake_at": at,
        "steps": 0, "trigger": {"event": "go"}, "outcome": None, "entered_at": at,
        "finished_at": None, "request_id": None,
    }  # fmt: skip


@pytest.mark.parametrize("count", [3, 40])  # one by one, and the many-row path
def test_many_rows_added_updated_and_read_back_as_sqlalchemy_reads_them(conveyor, count):
    at = datetime(2026, 12, 2, 9, 30, 15, 123456, tzinfo=UTC)
    workspace_id, automation_id, contact_ids = _world(conveyor, count)
    with conveyor.store.db.write_connection() as conn:
        ids = bulk.next_ids(conn, runs, count) if conn.dialect.name == "postgresql" else None
        rows = [_run(c, at) for c in contact_ids]
        for i, row in enumerate(rows):
            row["workspace_id"], row["automation_id"] = workspace_id, automation_id
            row["id"] = ids[i] if ids else i + 1
        bulk.append(conn, runs, rows)
        later = at + timedelta(days=1)
        changes = [
            {"node": "b", "state": {"k": i}, "wake_at": later, "steps": i, "id": row["id"]}
            for i, row in enumerate(rows)
        ]
        changes.append({**changes[0], "node": "c"})  # the same run twice: the last one holds
        bulk.update(conn, runs, "id", changes)
        stmt = select(runs).where(runs.c.id.in_(bindparam("ids", expanding=True)))
        fast = bulk.fetch(conn, stmt, {"ids": [r["id"] for r in rows]})
        slow = conn.execute(stmt, {"ids": [r["id"] for r in rows]}).all()
    assert sorted(map(tuple, fast)) == sorted(map(tuple, slow))
    by_id = {r.id: r for r in fast}
    first = by_id[rows[0]["id"]]
    assert (first.node, first.state, first.wake_at, first.steps) == ("c", {"k": 0}, later, 0)
    last = by_id[rows[-1]["id"]]
    assert (last.node, last.steps, last.trigger, last.entered_at) == (
        "b", count - 1, {"event": "go"}, at,
    )  # fmt: skip
    assert last.finished_at is None and last.wake_at.tzinfo is not None


def test_a_value_too_long_for_its_column_is_refused_not_cut(conveyor):
    """A many-row UPDATE refuses a value longer than its column, as a plain UPDATE does."""
    if conveyor.store.db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite does not enforce VARCHAR lengths")
    _workspace, _automation, ids = _world(conveyor, 25)
    too_long = [{"locale": "x" * 40, "id": i} for i in ids]  # locale is VARCHAR(35)
    with pytest.raises(DBAPIError), conveyor.store.db.write_connection() as conn:
        bulk.update(conn, contacts, "id", too_long)
    with conveyor.store.db.read_connection() as conn:
        locales = {r[0] for r in conn.execute(select(contacts.c.locale))}
    assert locales == {None}


def test_many_steps_added_keep_their_order(conveyor):
    workspace_id, automation_id, (contact_id,) = _world(conveyor, 1)
    at = datetime(2026, 12, 2, tzinfo=UTC)
    rows = [
        {"workspace_id": workspace_id, "run_id": None, "contact_id": contact_id,
         "automation_id": automation_id,
         "version": 1, "node": f"n{i}", "outcome": "done", "reason": {"i": i}, "at": at}
        for i in range(50)
    ]  # fmt: skip
    with conveyor.store.db.write_connection() as conn:
        bulk.append(conn, steps, rows)
        found = bulk.fetch(conn, select(steps.c.node, steps.c.reason).order_by(steps.c.id))
    assert [(r.node, r.reason) for r in found] == [(f"n{i}", {"i": i}) for i in range(50)]


@pytest.mark.parametrize("count", [3, 30])
def test_many_tags_added_and_removed(conveyor, count):
    workspace_id, _automation, ids = _world(conveyor, count)
    at = datetime(2026, 12, 2, tzinfo=UTC)
    rows = [
        {"contact_id": c, "tag": tag, "workspace_id": workspace_id, "created_at": at}
        for c in ids
        for tag in ("keep", "drop")
    ]
    with conveyor.store.write() as tx:
        tx.contacts.add_tags(rows)
        tx.contacts.remove_tags([(c, "drop") for c in ids] + [(ids[0], "absent")])
    with conveyor.store.db.read_connection() as conn:
        left = conn.execute(select(contact_tags.c.contact_id, contact_tags.c.tag)).all()
    assert sorted(left) == sorted((c, "keep") for c in ids)


def test_fetch_processes_every_bound_value_as_sqlalchemy_would(conveyor):
    """A datetime and a JSON path bound to a statement read through the driver mean what they
    mean to SQLAlchemy (stored formats differ by dialect)."""
    workspace_id, automation_id, (contact_id,) = _world(conveyor, 1)
    early = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    rows = [
        {"workspace_id": workspace_id, "run_id": None, "contact_id": contact_id,
         "automation_id": automation_id, "version": 1, "node": f"n{i}", "outcome": "done",
         "reason": {"why": f"w{i}"}, "at": early + timedelta(hours=i)}
        for i in range(3)
    ]  # fmt: skip
    stmt = select(steps.c.node, steps.c.reason["why"].as_string().label("why")).where(
        steps.c.at >= bindparam("since")
    )
    since = early + timedelta(hours=1)
    with conveyor.store.db.write_connection() as conn:
        bulk.append(conn, steps, rows)
        fast = bulk.fetch(conn, stmt.order_by(steps.c.id), {"since": since})
        slow = conn.execute(stmt.order_by(steps.c.id), {"since": since}).all()
    assert [tuple(r) for r in fast] == [tuple(r) for r in slow] == [("n1", "w1"), ("n2", "w2")]


@pytest.mark.parametrize("size", [0, 1, 3, 700])
def test_fetch_with_in_lists_reads_what_sqlalchemy_reads(conveyor, size):
    """IN and NOT IN lists of ids, texts and times (empty, one, several, more than a chunk):
    on PostgreSQL each list goes as one array parameter (`= ANY`, `<> ALL`), and the rows are
    the ones SQLAlchemy's own expansion finds."""
    workspace_id, automation_id, ids = _world(conveyor, 5)
    early = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    rows = [
        {"workspace_id": workspace_id, "run_id": None, "contact_id": ids[i % 5],
         "automation_id": automation_id, "version": 1, "node": f"n{i % 4}", "outcome": "done",
         "reason": {}, "at": early + timedelta(minutes=i % 7)}
        for i in range(40)
    ]  # fmt: skip
    wanted = {
        "contacts": (ids[:2] + [10**9 + i for i in range(size)])[:size],
        "nodes": [f"n{i}" for i in range(size)][:size],
        "times": [early + timedelta(minutes=i) for i in range(size)],
        "skip": ["n3"],
    }
    stmt = (
        select(steps.c.id, steps.c.contact_id, steps.c.node, steps.c.at)
        .where(
            steps.c.contact_id.in_(bindparam("contacts", expanding=True))
            | steps.c.node.in_(bindparam("nodes", expanding=True))
            | steps.c.at.in_(bindparam("times", expanding=True)),
            steps.c.node.not_in(bindparam("skip", expanding=True)),
        )
        .order_by(steps.c.id)
    )
    with conveyor.store.db.write_connection() as conn:
        bulk.append(conn, steps, rows)
        fast = bulk.fetch(conn, stmt, wanted)
        slow = conn.execute(stmt, wanted).all()
    assert [tuple(r) for r in fast] == [tuple(r) for r in slow]
    assert (len(fast) > 0) == (size > 0)
    assert all(r.node != "n3" for r in fast)


def test_sessions_read_times_in_utc_whatever_the_servers_zone(database_url):
    """A server whose TimeZone is Europe/Berlin (here: the connection's startup option):
    Conveyor's sessions still read in UTC, and times come back as `datetime.UTC`, the fast
    path of psycopg's timestamptz loader (a named zone costs a ZoneInfo per value)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite stores times as text in UTC")
    from conveyor.store.database import make_engine

    engine = make_engine(database_url, connect_args={"options": "-c timezone=Europe/Berlin"})
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW timezone").scalar_one() == "UTC"
            moment = conn.exec_driver_sql("SELECT '2026-12-03 12:00:00+01'::timestamptz")
            at = moment.scalar_one()
        assert at.tzinfo is UTC
        assert at == datetime(2026, 12, 3, 11, 0, tzinfo=UTC)
    finally:
        engine.dispose()
