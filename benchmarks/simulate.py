"""Backtest benchmark: 30 days of a generated shop's history × N contacts through a 10-node draft.

Each dialect runs in a fresh (spawned) process so its RSS is the simulation's alone. Not timed:
N contacts and their month of events (history.py: cart updates, orders, page views; about 4.5
events a contact) ingested hour by hour on a simulated clock, nothing active; on PostgreSQL a
VACUUM ANALYZE, as autovacuum would. Timed: one `Simulator.backtest` of the draft over the
30 days — events streamed from the store in chunks, contacts read once, every step through the
engine's Tick, every message through the send policy (the workspace has caps). Reported:
seconds, events and steps per second, RSS before and after (memory grows with contacts, not
events), and the simulated counts as a sanity check.

    .venv/bin/python benchmarks/simulate.py [--contacts 100000] [--days 30]
        [--dialect sqlite|postgresql|both] [--workers 1,2] [--keep DIR]

`--workers 1,2`: the backtest once in one process, then split by contact across two (the
reports must be equal); the time per run, its CPU seconds (every process's) and the load
average when it started. "events / s" and "steps / s" are of the last run.

Databases: a temp-dir SQLite file, or `conveyor_bench_simulate_<pid>` on 127.0.0.1:5432
(dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import resource
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import history
import psycopg
import yaml
from common import database, dialects, log, machine, print_table, rss_mb

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.services.simulate import Scope
from conveyor.settings import Settings

DRAFT = yaml.safe_load("""
key: cart-rescue
triggers: [{event: cart_updated}]
entry: {repeat: every_time}
nodes:
  - {id: wait-for-order, type: wait_until, condition: {event: order_completed, within: since_entry},
     timeout: 1 hour, on_timeout: big-cart, next: ordered}
  - {id: big-cart, type: if, then: tag,
     condition: {event: cart_updated, where: [{property: total, op: gte, value: 50}]},
     else: reminder}
  - {id: tag, type: add_tag, tag: big-cart}
  - {id: reminder, type: send_email, template: cart-reminder-1}
  - {id: one-day, type: wait, for: 1 day}
  - {id: still, type: if, condition: {event: order_completed, within: since_entry}, then: ordered,
     else: second}
  - {id: second, type: send_email, template: cart-reminder-2}
  - {id: score, type: adjust_score, by: -1}
  - {id: untag, type: remove_tag, tag: big-cart, next: end}
  - {id: ordered, type: goal, condition: {event: order_completed, within: since_entry},
     otherwise: end}
""")


@contextlib.contextmanager
def kept(dialect: str, keep: str | None) -> Iterator[tuple[str, dict[str, str]]]:
    """`--keep DIR` (SQLite): the seeded database stays in DIR and the next run reuses it."""
    if keep is None or dialect != "sqlite":
        with database(dialect, "simulate") as found:
            yield found
        return
    os.makedirs(keep, exist_ok=True)
    yield f"sqlite:///{keep}/conveyor.db", {"CONVEYOR_DATA_DIR": keep}


def bench(
    dialect: str, contacts: int, days: int, workers: list[int], keep: str | None = None
) -> dict[str, Any]:
    with kept(dialect, keep) as (url, _):
        meta = os.path.join(keep, f"seeded-{contacts}-{days}.json") if keep else None
        out: dict[str, Any] = {"contacts": contacts}
        if meta and dialect == "sqlite" and os.path.exists(meta):
            with open(meta) as f:
                seeded = json.load(f)
            start, end = (datetime.fromisoformat(seeded[k]) for k in ("start", "end"))
            clock = SimulatedClock(end)
            conveyor = bootstrap(Settings(database_url=url), clock=clock)
            conveyor.upgrade_schema()
            workspace = conveyor.workspaces.get("bench")
            out["ingest_s"] = seeded["ingest_s"]
            log.print(f"{dialect}: reusing the database seeded in {keep}", highlight=False)
        else:
            start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
                days=days
            )
            clock = SimulatedClock(start)
            conveyor = bootstrap(Settings(database_url=url), clock=clock)
            conveyor.upgrade_schema()
            workspace, _ = conveyor.workspaces.create("bench")
            began = time.perf_counter()
            workspace = history.setup(conveyor, workspace, contacts, active=False)
            calls = history.plan(contacts, days)
            history.run(conveyor, clock, workspace, calls, days, live=False)
            out["ingest_s"] = time.perf_counter() - began
            log.print(f"{dialect}: seeded in {out['ingest_s']:.0f} s", highlight=False)
            if meta and dialect == "sqlite":
                with open(meta, "w") as f:
                    json.dump(
                        {
                            "start": start.isoformat(),
                            "end": clock.now().isoformat(),
                            "ingest_s": out["ingest_s"],
                        },
                        f,
                    )
        end = clock.now()
        if dialect == "postgresql":  # not timed: autovacuum's job
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        out["rss_before"] = rss_mb()
        for n in workers:  # the one-process run first: its RSS is the replay's
            out[f"load_{n}"] = os.getloadavg()[0]
            began = time.perf_counter()
            report = conveyor.simulator.backtest(workspace, Scope(DRAFT), start, end, workers=n)
            out[f"seconds_{n}"] = time.perf_counter() - began
            out[f"cpu_{n}"] = report.cpu_seconds
            # the largest worker process's peak (the backtest's processes are this one's children)
            out[f"rss_workers_{n}"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            if n == workers[0]:
                out["rss_after"] = rss_mb()
                out["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                first = report.as_dict()
            elif report.as_dict() != first:
                raise AssertionError(f"{n} processes made another report than {workers[0]}")
            log.print(f"{dialect}: {n} process(es): {out[f'seconds_{n}']:.1f} s", highlight=False)
        out["seconds"] = out[f"seconds_{workers[-1]}"]
        tally = report.tallies["cart-rescue"]
        out["events"] = report.events
        out["steps"] = sum(sum(c.values()) for c in tally.nodes.values())
        out["entries"] = sum(tally.entered.values())
        out["sent"], out["deferred"] = tally.sent, tally.deferred
        out["events_per_s"] = report.events / out["seconds"]
        out["steps_per_s"] = out["steps"] / out["seconds"]
        out["steps_per_cpu_s"] = out["steps"] / out[f"cpu_{workers[-1]}"]
        conveyor.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--workers",
        default="1,2",
        help="processes to split the replay across, each timed in turn (e.g. 1,2 or 2)",
    )
    parser.add_argument(
        "--keep",
        metavar="DIR",
        help="SQLite: seed into DIR once and reuse it on the next runs (the seeding is not timed)",
    )
    args = parser.parse_args()
    workers = [int(n) for n in args.workers.split(",")]
    started = machine()
    results: dict[str, dict[str, Any]] = {}
    for dialect in dialects(args.dialect):
        # Not a Pool: its daemonic workers could not start the backtest's own processes.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            results[dialect] = pool.submit(
                bench, dialect, args.contacts, args.days, workers, args.keep
            ).result()
    print_table(
        f"Backtest: {args.days} days × {args.contacts:,} contacts, 10-node draft",
        [
            ("contacts", "contacts"),
            ("events replayed", "events"),
            *(
                row
                for n in workers
                for row in (
                    (f"backtest seconds, {n} process(es)", f"seconds_{n}", "{:,.1f}", "< 60"),
                    (f"  CPU seconds, {n} process(es)", f"cpu_{n}", "{:,.1f}"),
                    ("  load average (1 min) at its start", f"load_{n}", "{:,.1f}"),
                    ("  peak RSS of a worker process so far, MB", f"rss_workers_{n}"),
                )
            ),
            ("events / s", "events_per_s"),
            ("steps / s", "steps_per_s"),
            ("steps / CPU second", "steps_per_cpu_s"),
            ("entries", "entries"),
            ("steps", "steps"),
            ("messages sent", "sent"),
            ("messages deferred by caps", "deferred"),
            ("RSS before, MB", "rss_before"),
            ("RSS after, MB", "rss_after"),
            ("peak RSS, MB", "rss_peak"),
            ("(not timed) seeding, s", "ingest_s"),
        ],
        results,
        started,
    )


if __name__ == "__main__":
    main()
