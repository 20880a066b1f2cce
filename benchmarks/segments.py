"""Segment benchmark: audience counts in SQL and single-contact evaluations, at scale.

Loads a seeded dataset into a throwaway database: N contacts (custom field `country`, ~20% DE;
tags `vip` ~5%, `beta` ~10%, `newsletter` ~40%; a timezone) and M events in time order over the
last 365 days (~20% `order_completed` with {"items", "total"}, `page`, `cart_updated`, ...;
activity skewed towards heavy users). The schema comes from `migrate.upgrade`; its secondary
indexes on events/tags are dropped for the load and rebuilt from their own definitions after.
Rows go in with COPY on PostgreSQL, big `executemany` transactions on SQLite (unsafe pragmas only
while loading); then ANALYZE (VACUUM ANALYZE on PostgreSQL, as autovacuum does for a log).
Measured per dialect: segment counts with `ConditionSQL.count_query` (build + run, median of 5
after a warm-up; the plan of the mixed one goes to /tmp/conveyor_bench_segments_plan.<dialect>.txt);
`Evaluator.evaluate` on in-memory snapshots of a sample of contacts (checked against SQL); and
end to end, one contact at a time: loading its snapshot and evaluating, and `Segments.explain`.

    .venv/bin/python benchmarks/segments.py [--contacts 1000000] [--events 10000000]
        [--dialect sqlite|postgresql|both] [--keep]

Databases: `conveyor_bench_segments` on 127.0.0.1:5432 and /tmp/conveyor_bench_segments.sqlite,
dropped at the end unless --keep; a loaded database of the same size and seed is reused.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from pathlib import Path
from statistics import median
from typing import Any

import orjson
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import insert, select, update
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from conveyor.clock import SimulatedClock
from conveyor.domain.conditions import Condition, parse_condition
from conveyor.domain.evaluation import Evaluator, event_names
from conveyor.domain.fields import FieldDefinition, FieldType
from conveyor.services.conditions import ConditionContext
from conveyor.services.contacts import Contacts
from conveyor.services.segments import Segments
from conveyor.services.workspaces import workspace_from_row
from conveyor.store import migrate
from conveyor.store.conditions import ConditionSQL
from conveyor.store.database import make_engine
from conveyor.store.schema import contacts, field_definitions, workspaces
from conveyor.store.store import Store

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
DB_NAME = "conveyor_bench_segments"
SQLITE_FILE = Path("/tmp/conveyor_bench_segments.sqlite")
PLAN_FILE = "/tmp/conveyor_bench_segments_plan.{}.txt"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY, SEED, WS, TIMEOUT = 86400, 20260601, 1, 60
FIELDS = {key: FieldDefinition(key, FieldType.TEXT) for key in ("country", "plan")}
COUNTRIES = (
    ["DE"] * 20 + ["US"] * 30 + ["FR", "GB"] * 10 + ["NL", "ES", "IT", "PL"] * 5 + [None] * 10
)
TIMEZONES = ["Europe/Berlin", "America/New_York", "Europe/London", "Asia/Tokyo", None]
TAGS = [("vip", 0.05), ("beta", 0.10), ("newsletter", 0.40)]
EVENTS = ["order_completed"] * 20 + ["page"] * 45 + ["cart_updated", "product_viewed"] * 15
EVENTS += ["email.opened"] * 5
PATHS = ['{"path": "/"}', '{"path": "/pricing"}', '{"path": "/shop"}', '{"path": "/blog"}']
MIXED = {
    "all": [
        {"field": "country", "op": "eq", "value": "DE"},
        {"event": "order_completed", "count": {"gte": 3}, "within": "90 days"},
        {"not": {"tag": "vip"}},
    ]
}
SHAPES: dict[str, Any] = {
    "mixed (DE, >=3 orders/90d, not vip)": MIXED,
    "sum(total) >= 500 in 90 days": {"event": "order_completed", "within": "90 days"}
    | {"aggregate": "sum", "property": "total", "op": "gte", "value": 500},
    "tags_any [beta, vip]": {"tags_any": ["beta", "vip"]},
    "country = DE": {"field": "country", "op": "eq", "value": "DE"},
    "not tagged newsletter": {"not": {"tag": "newsletter"}},
}
COLUMNS = {
    "contacts": "id, workspace_id, external_id, email, timezone, score, fields, created_at, updated_at",
    "contact_tags": "contact_id, tag, workspace_id, created_at",
    "events": "id, workspace_id, contact_id, kind, name, properties, timestamp, received_at",
}
LOAD_STEPS = ("load contacts + tags", "load events", "rebuild secondary indexes", "ANALYZE")
Put = Callable[[str, str, str], None]


def stamper(pg: bool) -> Callable[[int], str]:
    """Seconds before NOW -> the text each dialect stores (SQLite: SQLAlchemy's own format)."""
    start = NOW - timedelta(days=800)
    days = [(start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(802)]
    suffix, base = ("+00" if pg else ".000000"), 800 * DAY + 12 * 3600

    def stamp(ago: int) -> str:
        s = base - ago
        rest = s % DAY
        return f"{days[s // DAY]} {rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}{suffix}"

    return stamp


def contact_rows(n: int, stamp: Callable[[int], str]) -> Iterator[tuple[Any, ...]]:
    rand = random.Random(SEED).random
    for cid in range(1, n + 1):
        fields = {"plan": "pro" if rand() < 0.2 else "free"}
        if country := COUNTRIES[int(rand() * 100)]:
            fields["country"] = country
        row = (f"u{cid}", f"user{cid}@example.com", TIMEZONES[cid % 5], int(rand() * 100))
        created = stamp(int(rand() * 730 * DAY))
        yield (cid, WS, *row, orjson.dumps(fields).decode(), created, created)


def tag_rows(n: int, stamp: Callable[[int], str]) -> Iterator[tuple[Any, ...]]:
    rand, created = random.Random(SEED + 1).random, stamp(0)
    for cid in range(1, n + 1):
        for tag, share in TAGS:
            if rand() < share:
                yield (cid, tag, WS, created)


def event_rows(m: int, n: int, stamp: Callable[[int], str]) -> Iterator[tuple[Any, ...]]:
    """Events in time order over 365 days; contact = n * u^2 (heavy users have low ids)."""
    rand, span = random.Random(SEED + 2).random, 365 * DAY
    for i in range(m):
        name, u = EVENTS[int(rand() * 100)], rand()
        contact = 1 + int(n * u * u)
        if name in ("order_completed", "cart_updated"):
            props = f'{{"items": {1 + int(rand() * 6)}, "total": {5 + rand() * 295:.2f}}}'
        elif name == "page":
            props = PATHS[int(u * 4000) % 4]
            contact = None if u > 0.98 else contact  # some anonymous page views
        else:
            props = (
                f'{{"sku": "sku-{int(u * 1000)}"}}' if name[0] == "p" else '{"template": "welcome"}'
            )
        ts = stamp(span - span * i // m)
        yield (i + 1, WS, contact, "page" if name == "page" else "track", name, props, ts, ts)


def pg_admin(sql: str) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def drop(dialect: str) -> None:
    if dialect == "postgresql":
        pg_admin(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
    for suffix in ("", "-wal", "-shm") if dialect == "sqlite" else ():
        Path(f"{SQLITE_FILE}{suffix}").unlink(missing_ok=True)


def prepare(dialect: str, n: int, m: int, put: Put) -> str:
    """A loaded database of this size and seed: the one a --keep run left, or a new one."""
    url = f"sqlite:///{SQLITE_FILE}" if dialect == "sqlite" else f"{PG_SERVER}/{DB_NAME}"
    marker = {"contacts": n, "events": m, "seed": SEED}
    if dialect == "postgresql" or SQLITE_FILE.exists():
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                settings = conn.execute(select(workspaces.c.settings)).scalar()
        except SQLAlchemyError:
            settings = None
        engine.dispose()
        if settings and settings.get("bench") == marker:
            for label in LOAD_STEPS:
                put(label, dialect, "reused (--keep)")
            return url
    drop(dialect)
    if dialect == "postgresql":
        pg_admin(f"CREATE DATABASE {DB_NAME}")
    engine = make_engine(url)
    migrate.upgrade(engine)
    workspace = {"id": WS, "name": "bench", "secret": "s", "settings": {}, "created_at": NOW}
    fields = [{"key": k, "type": "text", "workspace_id": WS, "created_at": NOW} for k in FIELDS]
    with engine.begin() as conn:
        conn.execute(insert(workspaces), workspace)
        conn.execute(insert(field_definitions), fields)
    engine.dispose()  # SQLite leaves WAL mode for the load: no other connection may be open
    load(dialect, n, m, put)
    with engine.begin() as conn:  # marks the load complete
        conn.execute(update(workspaces).values(settings={"timezone": "UTC", "bench": marker}))
    engine.dispose()
    return url


def load(dialect: str, n: int, m: int, put: Put) -> None:
    """Rows in bulk; the migration's secondary indexes are dropped first and rebuilt after."""
    pg, stamp, spent = dialect == "postgresql", stamper(dialect == "postgresql"), defaultdict(float)
    if pg:
        conn: Any = psycopg.connect(f"{PG_SERVER}/{DB_NAME}", autocommit=True)
        conn.execute("SET maintenance_work_mem = '1GB'")
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE indexname ~ '^ix_(events|contact_tags)'"
    else:
        conn = sqlite3.connect(SQLITE_FILE, isolation_level=None)
        conn.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-2000000"
        )
        sql = "SELECT name, sql FROM sqlite_master WHERE name GLOB 'ix_events*' OR name GLOB 'ix_contact_tags*'"
    indexes = conn.execute(sql).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    for label, table, rows in [
        (LOAD_STEPS[0], "contacts", contact_rows(n, stamp)),
        (LOAD_STEPS[0], "contact_tags", tag_rows(n, stamp)),
        (LOAD_STEPS[1], "events", event_rows(m, n, stamp)),
    ]:
        start, cols = time.perf_counter(), COLUMNS[table]
        if pg:
            with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * (cols.count(',') + 1))})"
            it = iter(rows)
            while batch := list(islice(it, 1_000_000)):
                conn.execute("BEGIN")
                conn.executemany(sql, batch)
                conn.execute("COMMIT")
        spent[label] += time.perf_counter() - start
    for label, statements in [
        (LOAD_STEPS[2], [sql for _, sql in indexes]),
        (LOAD_STEPS[3], ["VACUUM ANALYZE" if pg else "ANALYZE"]),
    ]:
        start = time.perf_counter()
        for sql in statements:
            conn.execute(sql)
        spent[label] = time.perf_counter() - start
    if not pg:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    rates = {LOAD_STEPS[0]: (n, "contacts"), LOAD_STEPS[1]: (m, "rows")}
    for label, seconds in spent.items():
        count, unit = rates.get(label, (0, ""))
        rate = f" ({count / seconds:,.0f} {unit}/s)" if count else ""
        put(label, dialect, f"{seconds:,.1f} s{rate}")


def timed(work: Callable[[], Any], runs: int = 5) -> tuple[float, Any]:
    """Median seconds of `runs` calls after one warm-up, and the last result."""
    result, times = work(), []
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return median(times), result


def measure(dialect: str, url: str, n: int, sample: int, single: int, put: Put) -> None:
    store = Store(url)
    mixed = parse_condition(MIXED, FIELDS)

    def count(cond: Condition) -> int:
        stmt = ConditionSQL(dialect, WS, NOW, lists={}).count_query(cond)
        with store.db.engine.connect() as conn:
            if dialect == "postgresql":
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = '{TIMEOUT}s'")
            return conn.execute(stmt).scalar_one()

    for label, raw in SHAPES.items():
        cond = parse_condition(raw, FIELDS)
        try:
            seconds, found = timed(lambda cond=cond: count(cond))
            put(f"count: {label}", dialect, f"{seconds * 1000:,.0f} ms ({found:,} contacts)")
        except OperationalError:  # statement_timeout
            put(f"count: {label}", dialect, f"cancelled after {TIMEOUT} s")
    stmt = ConditionSQL(dialect, WS, NOW, lists={}).count_query(mixed)
    sql = str(stmt.compile(store.db.engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN (ANALYZE, BUFFERS) " if dialect == "postgresql" else "EXPLAIN QUERY PLAN "
    with store.db.engine.connect() as conn:
        plan = [" | ".join(str(v) for v in row) for row in conn.exec_driver_sql(explain + sql)]
    Path(PLAN_FILE.format(dialect)).write_text(sql + "\n\n" + "\n".join(plan) + "\n")

    clock = SimulatedClock(NOW)
    service = Segments(store, clock, Contacts(store, clock))
    with store.read() as tx:
        ctx = ConditionContext(tx, workspace_from_row(tx.workspaces.get(WS)))
    names, evaluator = event_names(mixed), Evaluator()
    step = max(1, n // sample)
    ids = list(range(step, n + 1, step))[:sample]
    start = time.perf_counter()
    with store.read() as tx:  # in bulk, the way `Segments.process_log` loads them
        snaps = list(service.snapshots(tx, ctx, ids, names).values())
    seconds = time.perf_counter() - start
    put(f"load {len(snaps):,} snapshots in one tx", dialect, f"{len(snaps) / seconds:,.0f} /s")
    seconds, hits = timed(lambda: sum(evaluator.evaluate(mixed, s, NOW).ok for s in snaps))
    put("evaluate, in-memory snapshots", dialect, f"{len(snaps) / seconds:,.0f} /s")
    members = ConditionSQL(dialect, WS, NOW, lists={}).members_query(
        mixed, after_id=None, limit=None
    )
    with store.db.engine.connect() as conn:  # membership as `Segments.refresh` computes it
        found = conn.execute(members.with_only_columns(contacts.c.id)).scalars()
        in_sql = len(set(ids).intersection(found))
    agree = "agree" if hits == in_sql else "MISMATCH"
    put(f"{len(snaps):,} sampled: evaluator vs SQL", dialect, f"{hits:,} vs {in_sql:,}: {agree}")

    few = ids[:: max(1, len(ids) // single)][:single]

    def one_by_one() -> None:
        for cid in few:
            with store.read() as tx:
                evaluator.evaluate(mixed, service.snapshots(tx, ctx, [cid], names)[cid], NOW)

    seconds, _ = timed(one_by_one, runs=1)
    put(f"load snapshot + evaluate, 1/tx ({len(few):,})", dialect, f"{len(few) / seconds:,.0f} /s")
    ws = ctx.workspace
    seconds, _ = timed(lambda: [service.explain(ws, cid, raw=MIXED) for cid in few], runs=1)
    put(f"Segments.explain, 1/call ({len(few):,})", dialect, f"{len(few) / seconds:,.0f} /s")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--sample", type=int, default=20_000, help="contacts evaluated in memory")
    parser.add_argument("--single", type=int, default=2_000, help="contacts loaded one by one")
    parser.add_argument("--keep", action="store_true", help="keep the databases for a rerun")
    args = parser.parse_args()
    log, started = Console(stderr=True, markup=False, soft_wrap=True), time.perf_counter()
    results: dict[str, dict[str, str]] = defaultdict(dict)

    def put(label: str, dialect: str, value: str) -> None:
        results[label][dialect] = value
        log.print(f"{time.perf_counter() - started:6.0f}s {dialect} {label}: {value}")

    loads = [os.getloadavg()]
    for dialect in ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]:
        try:
            url = prepare(dialect, args.contacts, args.events, put)
            measure(dialect, url, args.contacts, args.sample, args.single, put)
        finally:
            if not args.keep:
                drop(dialect)
    loads.append(os.getloadavg())
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next(line.split(":")[1].strip() for line in cpuinfo if line.startswith("model name"))
    table = Table(
        title=f"Segments: {args.contacts:,} contacts, {args.events:,} events (now = {NOW:%F})",
        caption=f"nproc {os.cpu_count()} | {cpu} | Python {platform.python_version()} | SQLite "
        f"{sqlite3.sqlite_version} | load average 1/5/15 min before "
        + " / after ".join("/".join(f"{x:.2f}" for x in avg) for avg in loads),
    )
    for column in ("measurement", "SQLite", "PostgreSQL"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for label, values in results.items():
        table.add_row(label, values.get("sqlite", "-"), values.get("postgresql", "-"))
    Console(width=150, markup=False).print(table)


if __name__ == "__main__":
    main()
