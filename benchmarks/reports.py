"""Reports benchmark: the reports consumer's rollup throughput over a big log, then the report
endpoints' service calls (p50/max) on the rollups it built — each beside its ceiling.

Per dialect, in process (`bootstrap` with a SimulatedClock): M messages over the last 90 days
(20 automations of 3 nodes, 30 templates of 3 versions, email and SMS) and their log, written
through the driver's bulk path (COPY on PostgreSQL; not timed): each message is sent, mostly
delivered, opened by people (some several times) and by privacy proxies, sometimes clicked
(and scanned), bounced, unsubscribed; the automations' entered/completed events; orders
(conversions with revenue); and page views no report counts — ~10 events per message. The
step log gets each run's steps (the funnel is folded from it). Then, timed:

1. **Consumer**: the reports consumer alone (a LogConsumer with only its handler, batches of
   1,000 events) from the start of the log until caught up. Events/s. Ceiling: the same
   LogConsumer with a handler that does nothing, over the first 10 % of the log (reading the
   log and moving the cursor is the floor any consumer pays).
2. **Reports**: `Reports.automation` (with its funnel), `.template` and `.overview` over the
   last 30 days by day and the last 90 days by week, R times each, warm: p50/max, with the
   load average. Ceiling: the rollup SQL of the same call alone (the store calls without the
   shaping), and for the automation its funnel query alone. For contrast, the same overview
   counted from the raw log (one GROUP BY over 90 days of events), which is what a report
   without rollups would cost.

`--keep` seeds once into kept databases (/work/data-reports/reports.db, PostgreSQL
`reports_bench`) and measures the reports on them on later runs; with a kept SQLite
database already folded, PostgreSQL folds a tenth of its log (its consumer rate) and takes
SQLite's rollups of the same log (same generator, same seed) instead of folding 10M events.

    .venv/bin/python benchmarks/reports.py [--messages 1000000] [--repeat 30]
        [--dialect sqlite|postgresql|both] [--keep [--seed-only | --load-only]]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from statistics import median
from typing import Any

import psycopg
from common import (
    PG_ADMIN,
    database,
    dialects,
    load_1min,
    log,
    machine,
    print_table,
    rss_mb,
)
from sqlalchemy import func, select

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.domain.errors import NotFound
from conveyor.services.log import LogConsumer
from conveyor.services.reports import LOG_CONSUMER
from conveyor.settings import Settings
from conveyor.store import bulk
from conveyor.store.schema import (
    events,
    log_cursors,
    report_daily,
    report_messages,
    report_overview,
    steps,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAYS = 90
AUTOMATIONS = 20
TEMPLATES = 30
CONTACTS_PER_MESSAGE = 0.2  # 1M messages to 200k contacts: 5 each


def automation(i: int) -> dict[str, Any]:
    return {
        "key": f"flow-{i}",
        "triggers": [{"event": f"signal_{i}"}],
        "entry": {"repeat": "every_time"},
        "nodes": [
            {"id": "pause", "type": "wait", "for": "1 hour"},
            {"id": "send", "type": "send_email", "template": f"tpl-{i % TEMPLATES}"},
            {"id": "bought", "type": "goal", "condition": {"event": "order_completed"}},
        ],
    }


def load(conveyor: Any, ws: int, n: int, rnd: random.Random) -> tuple[int, int]:
    """N messages' log and step log through the bulk path (COPY on PostgreSQL); (events,
    steps) written."""
    contacts = max(1, int(n * CONTACTS_PER_MESSAGE))
    span = DAYS * 86400
    written = step_count = 0
    chunk = 20_000
    with conveyor.store.db.engine.begin() as conn:
        for start in range(0, n, chunk):
            rows: list[dict[str, Any]] = []
            step_rows: list[dict[str, Any]] = []
            # Messages in time order, so the log is too (as it is live).
            for m in range(start, min(start + chunk, n)):
                at = NOW - timedelta(seconds=span) + timedelta(seconds=span * m / n)
                contact = rnd.randrange(contacts) + 1
                a = rnd.randrange(AUTOMATIONS)
                channel = "sms" if rnd.random() < 0.1 else "email"
                props = {
                    "message": m + 1,
                    "channel": channel,
                    "template": f"tpl-{a % TEMPLATES}",
                    "template_version": rnd.randint(1, 3),
                    "automation": f"flow-{a}",
                    "node": "send",
                    "run": m + 1,
                }

                def add(
                    name: str,
                    p: dict[str, Any],
                    seconds: float,
                    kind: str = "system",
                    contact: int = contact,
                    at: datetime = at,
                    rows: list[dict[str, Any]] = rows,
                ) -> None:
                    rows.append(
                        {
                            "workspace_id": ws,
                            "contact_id": contact,
                            "kind": kind,
                            "name": name,
                            "properties": p,
                            "context": None,
                            "message_id": None,
                            "timestamp": at + timedelta(seconds=seconds),
                            "received_at": at + timedelta(seconds=seconds),
                        }
                    )

                add("automation.entered", {"automation": f"flow-{a}", "via": "event"}, -3600)
                step_rows.append(_step(ws, contact, a, m + 1, "pause", "waited", at))
                step_rows.append(_step(ws, contact, a, m + 1, "send", "queued", at))
                add(f"{channel}.sent", props | {"to": "x"}, 0)
                roll = rnd.random()
                if roll < 0.02:
                    add("email.bounced", props | {"type": "hard"}, 5)
                    continue
                add(f"{channel}.delivered", props, 5)
                if rnd.random() < 0.4:
                    add(
                        f"{channel}.opened", props | {"proxy": "apple", "machine": "proxy_apple"}, 6
                    )
                if rnd.random() < 0.05:
                    add(f"{channel}.clicked", props | {"machine": "too_fast", "link": 0}, 7)
                if rnd.random() < 0.3:
                    for k in range(rnd.randint(1, 6)):
                        add(f"{channel}.opened", props, 3600 * (k + 1))
                    if rnd.random() < 0.3:
                        for k in range(rnd.randint(1, 5)):
                            add(f"{channel}.clicked", props | {"link": k % 2}, 3600 * (k + 2))
                        if rnd.random() < 0.3:
                            total = round(rnd.uniform(10, 300), 2)
                            add("order_completed", {"total": total}, 86400, kind="track")
                            add("automation.goal_reached", {"automation": f"flow-{a}",
                                                            "goal": "bought"}, 86400)  # fmt: skip
                            step_rows.append(
                                _step(
                                    ws,
                                    contact,
                                    a,
                                    m + 1,
                                    "bought",
                                    "goal_reached",
                                    at + timedelta(days=1),
                                )  # fmt: skip
                            )
                if rnd.random() < 0.005:
                    add("email.unsubscribed", props | {"list": None}, 7200)
                add("automation.completed", {"automation": f"flow-{a}"}, 86400 * 2)
                for k in range(4):  # the rest of the log: page views
                    add("page", {"path": f"/p/{k}"}, 600 * (k + 1), kind="page")
            rows.sort(key=lambda r: r["timestamp"])
            if conn.dialect.name == "postgresql":
                _copy(conn, "events", rows)
                _copy(conn, "steps", step_rows)
            else:
                bulk.insert(conn, events, rows)
                bulk.insert(conn, steps, step_rows)
            written += len(rows)
            step_count += len(step_rows)
            if start and start % 200_000 == 0:
                log.print(f"  seeded {start:,} messages, {written:,} events", highlight=False)
    return written, step_count


def _copy(conn: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY rows into a PostgreSQL table on the connection's own transaction (JSON as text)."""
    if not rows:
        return
    columns = list(rows[0])
    cursor = conn.connection.dbapi_connection.cursor()
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for r in rows:
            copy.write_row(
                [json.dumps(v) if isinstance(v, dict) else v for v in (r[c] for c in columns)]
            )
    cursor.close()


def _step(ws: int, contact: int, a: int, run: int, node: str, outcome: str, at: datetime) -> dict:
    return {
        "workspace_id": ws,
        "run_id": run,
        "contact_id": contact,
        "automation_id": a + 1,
        "version": 1,
        "node": node,
        "outcome": outcome,
        "reason": None,
        "at": at,
    }


def overview_sql(tx: Any, ws: int, first: str, last: str) -> None:
    """The rollup queries of an overview: per day, then per automation and channel."""
    tx.reports.figures(ws, first, last)
    tx.reports.figures(ws, first, last, by=("automation", "channel"), per_day=False)


def timed(call: Any, repeat: int) -> tuple[float, float]:
    took = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        took.append((time.perf_counter() - began) * 1000)
    return median(took), max(took)


def count(conveyor: Any, table: Any) -> int:
    with conveyor.store.db.read_connection() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


KEPT = {
    "sqlite": "sqlite:////work/data-reports/reports.db",
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/reports_bench",
}


@contextlib.contextmanager
def kept(dialect: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A database kept between runs (seeded once): a SQLite file, or `reports_bench`."""
    url = KEPT[dialect]
    if dialect == "sqlite":
        os.makedirs(os.path.dirname(url.removeprefix("sqlite:///")), exist_ok=True)
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            if not admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = 'reports_bench'"
            ).fetchone():
                admin.execute("CREATE DATABASE reports_bench")
    yield url, {}


def copy_rollups(conveyor: Any, source_url: str) -> None:
    """Take the rollups from a kept SQLite database seeded with the same generator and seed
    (the same log folds to the same rows) and put the reports cursor at the end of the log:
    PostgreSQL need not fold 10M events again on this shared machine (its consumer rate is
    measured on a sample first)."""
    source = bootstrap(Settings(database_url=source_url), clock=SimulatedClock(NOW))
    with source.store.db.read_connection() as src, conveyor.store.db.engine.begin() as dst:
        for table in (report_daily, report_overview, report_messages):
            dst.execute(table.delete())
            batch: list[dict[str, Any]] = []
            for row in src.execute(select(table)).mappings():
                batch.append(dict(row))
                if len(batch) == 50_000:
                    _copy(dst, table.name, batch)
                    batch = []
            _copy(dst, table.name, batch)
        position = dst.execute(select(func.max(events.c.id))).scalar_one()  # the whole log
        dst.execute(log_cursors.delete().where(log_cursors.c.name == LOG_CONSUMER))
        dst.execute(log_cursors.insert().values(name=LOG_CONSUMER, position=position))
    source.close()


def bench(
    dialect: str,
    n: int,
    repeat: int,
    keep: bool = False,
    seed_only: bool = False,
    load_only: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {"messages": n}
    with (kept if keep else partial(database, purpose="reports"))(dialect) as (url, _):
        clock = SimulatedClock(NOW)
        conveyor = bootstrap(Settings(database_url=url), clock=clock)
        conveyor.upgrade_schema()
        try:
            conveyor.workspaces.get("bench")
            fresh = False
        except NotFound:
            fresh = True
        if fresh:
            workspace, _ = conveyor.workspaces.create("bench")
            for t in range(TEMPLATES):
                for v in range(3):
                    conveyor.templates.save(
                        workspace, f"tpl-{t}", "email", {"subject": f"S{v}", "text": f"Hello {v}"}
                    )
            for a in range(AUTOMATIONS):
                conveyor.automations.apply(workspace, automation(a))
            started = time.perf_counter()
            out["events"], out["steps"] = load(conveyor, workspace.id, n, random.Random(20261201))
            log.print(
                f"{dialect}: loaded {n:,} messages, {out['events']:,} events, {out['steps']:,} "
                f"steps in {time.perf_counter() - started:.0f}s",
                highlight=False,
            )
        else:
            out["events"], out["steps"] = count(conveyor, events), count(conveyor, steps)
        if dialect == "postgresql":
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

        if fresh:
            # The floor: read a tenth of the log in batches and move a cursor, doing nothing.
            floor = LogConsumer(conveyor.store, clock, [("bench-floor", lambda *a: None)])
            sample, began = 0, time.perf_counter()
            while sample < out["events"] // 10:
                got = floor.process(1000)
                if not got:
                    break
                sample += got
            out["ceiling_eps"] = sample / (time.perf_counter() - began)

        consumer = LogConsumer(conveyor.store, clock, [(LOG_CONSUMER, conveyor.reports.on_events)])
        if load_only:
            conveyor.close()
            return out
        if (
            dialect == "postgresql"
            and keep
            and not count(conveyor, report_daily)
            and os.path.exists(KEPT["sqlite"].removeprefix("sqlite:///"))
        ):
            # Measure the consumer on a sample, then take the SQLite run's rollups.
            began, done = time.perf_counter(), 0
            while done < out["events"] // 10 and (got := consumer.process(1000)):
                done += got
            out["fold_s"] = time.perf_counter() - began
            out["fold_eps"] = done / out["fold_s"]
            copy_rollups(conveyor, KEPT["sqlite"])
        else:
            began, done = time.perf_counter(), 0
            while got := consumer.process(1000):
                done += got
                if done % 1_000_000 < 1000:
                    log.print(f"  {dialect}: folded {done:,} events", highlight=False)
            if done > out["events"] // 2:
                out["fold_s"] = time.perf_counter() - began
                out["fold_eps"] = done / out["fold_s"]
        out["rollup_rows"] = count(conveyor, report_daily)
        out["message_rows"] = count(conveyor, report_messages)
        log.print(
            f"{dialect}: folded {done:,} events, {out['rollup_rows']:,} rollup rows",
            highlight=False,
        )
        if dialect == "postgresql":
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        if seed_only:
            conveyor.close()
            return out

        ws = conveyor.workspaces.get("bench")
        reports = conveyor.reports
        today = NOW.date()
        month, quarter = today - timedelta(days=29), today - timedelta(days=DAYS - 1)
        calls = {
            "automation_30d": lambda: reports.automation(ws, "flow-3", month, today),
            "automation_90d_week": lambda: reports.automation(ws, "flow-3", quarter, today, "week"),
            "template_30d": lambda: reports.template(ws, "tpl-3", month, today),
            "overview_30d": lambda: reports.overview(ws, month, today),
            "overview_90d_week": lambda: reports.overview(ws, quarter, today, "week"),
        }
        for name, call in calls.items():
            call()  # warm: statement caches, the parsed definition
            out[f"{name}_load"] = load_1min()
            out[f"{name}_p50"], out[f"{name}_max"] = timed(call, repeat)
        first, last = month.isoformat(), today.isoformat()
        q_first = quarter.isoformat()

        def sql(work: Any) -> Any:
            def run() -> None:
                with conveyor.store.read() as tx:
                    work(tx)

            return run

        ceilings = {
            "automation_30d": sql(
                lambda tx: (
                    tx.reports.figures(ws.id, first, last, where={"automation": "flow-3"}),
                    tx.reports.figures(
                        ws.id,
                        first,
                        last,
                        by=("node",),
                        where={"automation": "flow-3"},
                        per_day=False,
                    ),
                )
            ),
            "funnel_30d": sql(lambda tx: tx.reports.funnel(ws.id, "flow-3", first, last)),
            "template_30d": sql(
                lambda tx: (
                    tx.reports.figures(ws.id, first, last, where={"template": "tpl-3"}),
                    tx.reports.figures(
                        ws.id,
                        first,
                        last,
                        by=("template_version",),
                        where={"template": "tpl-3"},
                        per_day=False,
                    ),
                )
            ),
            "overview_30d": sql(lambda tx: overview_sql(tx, ws.id, first, last)),
            "overview_90d_week": sql(lambda tx: overview_sql(tx, ws.id, q_first, last)),
        }
        for name, call in ceilings.items():
            call()
            out[f"sql_{name}_p50"], out[f"sql_{name}_max"] = timed(call, repeat)
        raw = (
            select(events.c.name, func.count())
            .where(
                events.c.workspace_id == ws.id,
                events.c.timestamp >= datetime.combine(quarter, datetime.min.time(), UTC),
            )
            .group_by(events.c.name)
        )
        began = time.perf_counter()
        with conveyor.store.db.read_connection() as conn:
            conn.execute(raw).all()
        out["raw_overview_ms"] = (time.perf_counter() - began) * 1000
        out["rss_mb"] = rss_mb()
        conveyor.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--dialect", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument("--keep", action="store_true", help="seed once into kept databases")
    parser.add_argument("--seed-only", action="store_true", help="seed and fold, then stop")
    parser.add_argument("--load-only", action="store_true", help="seed the log, then stop")
    args = parser.parse_args()
    started = machine()
    results = {
        d: bench(d, args.messages, args.repeat, args.keep, args.seed_only, args.load_only)
        for d in dialects(args.dialect)
    }
    if args.seed_only or args.load_only:
        log.print(results)
        return
    ms = "{:,.1f} ms"
    rows: list[tuple[Any, ...]] = [
        ("messages", "messages"),
        ("events in the log", "events"),
        ("steps in the log", "steps"),
        ("rollup rows kept", "rollup_rows"),
        ("consumer: events/s", "fold_eps", "{:,.0f}"),
        ("  ceiling: log read + cursor, events/s", "ceiling_eps", "{:,.0f}"),
        ("consumer: seconds for the whole log", "fold_s", "{:,.0f}"),
    ]
    for name, label in (
        ("automation_30d", "automation, 30 days by day (with funnel)"),
        ("automation_90d_week", "automation, 90 days by week (with funnel)"),
        ("template_30d", "template, 30 days by day"),
        ("overview_30d", "overview, 30 days by day"),
        ("overview_90d_week", "overview, 90 days by week"),
    ):
        rows.append((f"{label} p50", f"{name}_p50", ms, "< 200 ms"))
        rows.append((f"{label} max", f"{name}_max", ms, "< 200 ms"))
        rows.append(("  load average (1 min) as it ran", f"{name}_load", "{}"))
        if f"sql_{name}_p50" in next(iter(results.values())):
            rows.append(("  ceiling: its rollup SQL alone p50", f"sql_{name}_p50", ms))
        if name == "automation_30d":
            rows.append(("  ceiling: its funnel SQL alone p50", "sql_funnel_30d_p50", ms))
    rows += [
        ("contrast: 90-day overview from the raw log", "raw_overview_ms", ms),
        ("RSS of the benchmark process", "rss_mb", "{:,.0f} MB"),
    ]
    print_table(
        f"Reports: {args.messages:,} messages, consumer and report calls ({args.repeat} runs)",
        rows,
        results,
        started,
    )


if __name__ == "__main__":
    main()
