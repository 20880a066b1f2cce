"""Campaign benchmark: a newsletter to a list minus a segment, at 09:00 in each contact's
timezone, frozen and queued for N contacts (1,000,000 on PostgreSQL, 100,000 on SQLite).

Per dialect, in a fresh (spawned) process so its RSS is the campaign's alone, on a throwaway
database: a workspace, N contacts over five timezones (a tenth without one), 90 % of them
subscribed to `newsletter`, a tenth in the segment `inactive` (its members written directly, as
the segment consumer would have), a template. Loaded in bulk (COPY on PostgreSQL, executemany on
SQLite), untimed. Timed: the preview count (`Campaigns.count`), then `Campaigns.run_due` at the
campaign's start — the one transaction that freezes the audience into `campaign_recipients`
(INSERT … SELECT with row numbers) and writes every outbox row (INSERT … SELECT with the
timezone's instant from a CASE) — then the report's counts, and a cancel that withdraws every
queued message in one UPDATE. Beside it, its ceiling: as many outbox rows written by one INSERT
… SELECT from a generated series on an empty database (`--ceiling-only` runs just that). Peak RSS (ru_maxrss) of the process is printed: nothing is loaded
into Python, so it does not grow with N. Delivery of these rows is the delivery benchmark's
path (benchmarks/delivery.py): an outbox row of a campaign is an ordinary marketing message.

    .venv/bin/python benchmarks/campaigns.py [--sqlite 100000] [--postgresql 1000000]
        [--dialect sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import sqlite3
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from common import database, dialects, log, machine, print_table, rss_mb
from sqlalchemy import insert

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store import migrate
from conveyor.store.database import make_engine
from conveyor.store.schema import lists, segments, template_versions, templates, workspaces

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ZONES = ["Europe/Warsaw", "America/New_York", "Asia/Tokyo", "Europe/London", "Australia/Sydney"]
WS, LIST, SEGMENT = 1, 1, 1
CAMPAIGN = {
    "key": "bench-news",
    "template": "news",
    "audience": {"lists": ["newsletter"], "exclude": {"segments": ["inactive"]}},
    "schedule": {"date": "2026-03-03", "local_time": "09:00"},
}


def _time(pg: bool) -> Any:
    return NOW if pg else NOW.strftime("%Y-%m-%d %H:%M:%S.000000")


def load(dialect: str, url: str, n: int) -> None:
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(workspaces),
            {
                "id": WS,
                "name": "bench",
                "secret": "s",
                "settings": {"timezone": "UTC"},
                "created_at": NOW,
            },
        )
        conn.execute(
            insert(lists),
            {
                "id": LIST,
                "workspace_id": WS,
                "key": "newsletter",
                "name": "Newsletter",
                "double_opt_in": False,
                "created_at": NOW,
            },
        )
        conn.execute(
            insert(segments),
            {
                "id": SEGMENT,
                "workspace_id": WS,
                "key": "inactive",
                "name": "Inactive",
                "condition": {"tag": "inactive"},
                "time_based": False,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
        conn.execute(
            insert(templates),
            {
                "id": 1,
                "workspace_id": WS,
                "key": "news",
                "channel": "email",
                "name": "news",
                "version": 1,
                "created_at": NOW,
                "updated_at": NOW,
            },
        )
        conn.execute(
            insert(template_versions),
            {
                "template_id": 1,
                "version": 1,
                "content": {"subject": "s", "text": "t"},
                "created_at": NOW,
            },
        )
    engine.dispose()
    pg = dialect == "postgresql"
    at = _time(pg)
    tables = {
        "contacts": (
            "id, workspace_id, email, timezone, score, fields, created_at, updated_at",
            (
                (i, WS, f"c{i}@example.com", None if i % 10 == 0 else ZONES[i % 5], 0, "{}", at, at)
                for i in range(1, n + 1)
            ),
        ),
        "subscriptions": (
            "contact_id, list_id, workspace_id, status, updated_at",
            ((i, LIST, WS, "subscribed", at) for i in range(1, n + 1) if i % 10 != 3),
        ),
        "segment_members": (
            "segment_id, contact_id, entered_at",
            ((SEGMENT, i, at) for i in range(1, n + 1) if i % 10 == 7),
        ),
    }
    if pg:
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            for table, (cols, rows) in tables.items():
                with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            conn.execute("VACUUM ANALYZE")
        return
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    for table, (cols, rows) in tables.items():
        marks = ", ".join("?" * (cols.count(",") + 1))
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def measure(dialect: str, n: int, out: Any) -> None:
    results: dict[str, Any] = {}
    with database(dialect, "campaigns") as (url, _env):
        start = time.perf_counter()
        load(dialect, url, n)
        results["load"] = f"{time.perf_counter() - start:,.1f} s"
        clock = SimulatedClock(NOW)
        app = bootstrap(Settings(database_url=url), clock=clock)
        workspace = app.workspaces.get("bench")
        app.campaigns.apply(workspace, CAMPAIGN)
        results["rss_before"] = rss_mb()
        start = time.perf_counter()
        results["preview"] = app.campaigns.count(workspace, key="bench-news")
        results["preview_s"] = time.perf_counter() - start
        info = app.campaigns.schedule(workspace, "bench-news")
        clock.set(info.starts_at)
        start = time.perf_counter()
        app.campaigns.run_due()
        seconds = time.perf_counter() - start
        report = app.campaigns.report(workspace, "bench-news")
        results |= {
            "audience": report["audience"],
            "queued": report["queued"],
            "start_s": seconds,
            "rate": report["queued"] / seconds,
        }
        start = time.perf_counter()
        app.campaigns.report(workspace, "bench-news")
        results["report_s"] = time.perf_counter() - start
        start = time.perf_counter()
        app.campaigns.cancel(workspace, "bench-news")
        results["cancel_s"] = time.perf_counter() - start
        results["cancelled"] = app.campaigns.report(workspace, "bench-news")["cancelled"]
        results["rss_after"] = rss_mb()
        results["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        app.close()
    out.put(results)


def ceiling(dialect: str, rows: int, out: Any) -> None:
    """What the storage allows: `rows` outbox rows with the campaign's columns written by one
    INSERT … SELECT from a generated series (no audience, no snapshot, no timezones), on an
    empty migrated database, rolled back."""
    with database(dialect, "campaigns_ceiling") as (url, _env):
        engine = make_engine(url)
        migrate.upgrade(engine)
        series = (
            f"SELECT generate_series(1, {rows}) AS i"
            if dialect == "postgresql"
            else f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows})"
            " SELECT i FROM s"
        )
        payload = '\'{"config": {"campaign": "bench-news", "list": "newsletter"}}\''
        when = "now()" if dialect == "postgresql" else "'2026-03-03 09:00:00.000000'"
        sql = (
            "INSERT INTO outbox (workspace_id, channel, template, contact_id, message_class,"
            " priority, payload, idempotency_key, status, created_at, send_after, attempts,"
            f" campaign_id) SELECT 1, 'email', 'news', i, 'marketing', 0, {payload},"
            f" 'campaign:1:' || i, 'pending', {when}, {when}, 0, 1 FROM ({series}) AS g"
        )
        with engine.connect() as conn:
            transaction = conn.begin()
            start = time.perf_counter()
            conn.exec_driver_sql(sql)
            seconds = time.perf_counter() - start
            transaction.rollback()
        engine.dispose()
    out.put({"ceiling_s": seconds, "ceiling_rate": rows / seconds})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sqlite", type=int, default=100_000, help="contacts on SQLite")
    parser.add_argument("--postgresql", type=int, default=1_000_000, help="contacts on PostgreSQL")
    parser.add_argument("--dialect", default="both", choices=["sqlite", "postgresql", "both"])
    parser.add_argument(
        "--ceiling-only",
        action="store_true",
        help="only the ceiling: as many outbox rows as the audience, from a generated series",
    )
    args = parser.parse_args()
    started = machine()
    results: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    for dialect in dialects(args.dialect):
        n = args.sqlite if dialect == "sqlite" else args.postgresql
        log.print(f"{dialect}: {n:,} contacts")
        results[dialect] = {"contacts": n}
        steps = [(ceiling, n * 4 // 5)]  # the audience: 80 % of the contacts
        if not args.ceiling_only:
            steps.insert(0, (measure, n))
        for target, size in steps:
            queue = context.Queue()
            child = context.Process(target=target, args=(dialect, size, queue))
            child.start()
            results[dialect] |= queue.get()
            child.join()
    print_table(
        "A local-time newsletter: audience frozen and queued in one transaction",
        [
            ("contacts in the workspace", "contacts"),
            ("load (untimed setup)", "load"),
            ("preview count", "preview"),
            ("preview count, seconds", "preview_s", "{:,.2f}"),
            ("audience frozen", "audience"),
            ("outbox rows written", "queued"),
            ("freeze + queue, seconds", "start_s", "{:,.1f}", "< 60 s"),
            ("outbox rows / s", "rate"),
            ("ceiling: the same rows from a series, s", "ceiling_s", "{:,.1f}"),
            ("ceiling: outbox rows / s", "ceiling_rate"),
            ("report, seconds", "report_s", "{:,.2f}"),
            ("cancel (withdraw all), seconds", "cancel_s", "{:,.1f}"),
            ("messages withdrawn", "cancelled"),
            ("RSS before, MB", "rss_before", "{:,.0f}"),
            ("RSS after, MB", "rss_after", "{:,.0f}"),
            ("peak RSS (ru_maxrss), MB", "peak", "{:,.0f}"),
        ],
        results,
        started,
    )


if __name__ == "__main__":
    main()
