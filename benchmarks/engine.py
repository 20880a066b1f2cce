"""Automation-engine benchmark: contact-steps/s, worker memory, and trigger latency.

1. Throughput, in process (`bootstrap` with a SimulatedClock, each dialect in a fresh child
   process): N contacts are enrolled by tracked `bench_go` events and walk a 10-node automation
   (if/else on the event, add tag, increment a declared number field, wait 1 day, send email,
   wait 2 days, add tag, goal, adjust score, remove tag): 12 steps each. Ingest is not timed;
   only `Engine.run_until_idle` (log consumers + dispatch + execute) is, in four phases: enroll
   the first 10% of contacts, enroll the rest, then fast-forward the clock past each wait.
   Steps are counted from the `steps` table and checked against N x 12. On PostgreSQL, an
   untimed VACUUM ANALYZE runs before each phase, as autovacuum would (CI servers often turn
   it off; without statistics every lookup scans whole tables): `--no-vacuum` skips it.
2. Memory of that worker process: RSS with 10% and with 100% of the runs waiting (timers live
   in the database, so it should not grow), and its peak RSS (getrusage).
   Beside the rate, its ceiling (benchmarks/engine_ceiling.py): the rows the engine left — runs,
   steps, its events, outbox messages — written again with the driver alone into a fresh
   database, as contact-steps/s (`--no-ceiling` skips it).
3. Trigger latency: `conveyor serve` (real clock) on a fresh database and a free port, an
   automation whose first node is add_tag applied and activated over the HTTP API, then
   `/v1/track` calls (one new user each; `--batch K`: K per `/v1/batch`) paced at a steady
   rate. Latency is `steps.at` of each run's first step minus its event's `received_at`, both
   from the database (both are stamped when their transaction starts, so the commit of the
   engine's tick comes on top); see `common.trigger_latency`, which benchmarks/lead.py shares.
   Beside it, the HTTP response times the senders saw, and how many requests failed ("database
   is locked" among them); `--serve-arg` is passed to `serve` (`--serve-arg=--no-worker`: the
   API alone).

    .venv/bin/python benchmarks/engine.py [--contacts 100000] [--dialect sqlite|postgresql|both]
        [--rate 500] [--seconds 15] [--batch 1] [--part engine|latency|both] [--no-vacuum]
        [--no-ceiling] [--serve-arg=--no-worker]

Databases: a temp-dir SQLite file, or `conveyor_bench_{engine,latency}_<pid>` on 127.0.0.1:5432
(dropped).
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time
from datetime import datetime, timedelta
from typing import Any

import psycopg
import yaml
from common import database, dialects, log, machine, print_table, rss_mb, trigger_latency
from engine_ceiling import engine_ceiling
from sqlalchemy import func, select

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store.schema import events, runs, steps
from conveyor.worker.process import tune_gc

AUTOMATION = yaml.safe_load("""
key: bench
triggers: [{event: bench_go}]
entry: {repeat: once}
nodes:
  - {id: check, type: if, condition: {event: bench_go}, then: tag, else: end}
  - {id: tag, type: add_tag, tag: bench}
  - {id: count, type: increment_field, field: visits, by: 1}
  - {id: wait-1, type: wait, for: 1 day}
  - {id: mail, type: send_email, template: bench-mail}
  - {id: wait-2, type: wait, for: 2 days}
  - {id: done, type: add_tag, tag: done}
  - {id: goal, type: goal, condition: {tag: done}}
  - {id: score, type: adjust_score, by: 5}
  - {id: untag, type: remove_tag, tag: bench}
""")
STEPS_PER_CONTACT = 12  # the two waits log "waiting" and "waited"
LATENCY_AUTOMATION = {
    "key": "latency",
    "triggers": [{"event": "lat_go"}],
    "nodes": [{"id": "tag", "type": "add_tag", "tag": "lat"}],
}


def scalar(conveyor: Any, stmt: Any) -> int:
    with conveyor.store.db.read_connection() as conn:
        return conn.execute(stmt).scalar_one()


def _worker(url: str, now: datetime, batch: int, start: Any) -> None:
    """One of `--workers N` engine processes: the same clock moment, then until idle."""
    conveyor = bootstrap(Settings(database_url=url, engine_batch=batch), clock=SimulatedClock(now))
    tune_gc()  # as `conveyor worker` does
    start.wait()
    conveyor.engine.run_until_idle(max_rounds=10**7)
    conveyor.close()


def engine_bench(
    dialect: str,
    contacts: int,
    vacuum: bool,
    workers: int = 1,
    batch: int = 1000,
    ceiling: bool = True,
) -> dict[str, Any]:
    """Runs in a fresh (spawned) process, so that its RSS is the worker's alone; with
    `workers` > 1 the timed work runs in that many processes of its own, side by side."""
    with database(dialect, "engine") as (url, _):
        clock = SimulatedClock()
        conveyor = bootstrap(Settings(database_url=url, engine_batch=batch), clock=clock)
        tune_gc()  # as `conveyor worker` does
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        conveyor.catalog.declare_field(workspace, "visits", "number", None, None)
        conveyor.automations.apply(workspace, AUTOMATION)
        conveyor.automations.set_status(workspace, "bench", "active")
        out: dict[str, Any] = {"contacts": contacts, "seconds": 0.0, "rss_base": rss_mb()}
        out["workers"], out["batch"] = workers, batch
        event_ids: list[tuple[int, int]] = []  # the events the timed phases wrote
        last_event = select(func.coalesce(func.max(events.c.id), 0))

        def enroll(lo: int, hi: int) -> None:  # not timed: the ingest path
            for start in range(lo, hi, 1000):
                calls = [
                    {"type": "track", "userId": f"u{i}", "event": "bench_go", "messageId": f"m{i}"}
                    for i in range(start, min(start + 1000, hi))
                ]
                assert conveyor.ingest.calls(workspace, calls).accepted == len(calls)

        def phase(name: str) -> None:
            if vacuum and dialect == "postgresql":  # not timed: autovacuum's job
                with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            before = scalar(conveyor, select(func.count()).select_from(steps))
            first_event = scalar(conveyor, last_event)
            if workers == 1:
                started = time.perf_counter()
                conveyor.engine.run_until_idle(max_rounds=10**7)
                seconds = time.perf_counter() - started
            else:  # wait until all have started up; time from the go to the last one done
                spawn = multiprocessing.get_context("spawn")
                go = spawn.Barrier(workers + 1)
                procs = [
                    spawn.Process(target=_worker, args=(url, clock.now(), batch, go))
                    for _ in range(workers)
                ]
                for proc in procs:
                    proc.start()
                go.wait()
                started = time.perf_counter()
                for proc in procs:
                    proc.join()
                seconds = time.perf_counter() - started
            done = scalar(conveyor, select(func.count()).select_from(steps)) - before
            event_ids.append((first_event, scalar(conveyor, last_event)))
            out["seconds"] += seconds
            out[f"rate_{name}"] = done / seconds
            log.print(f"{dialect}: {name}: {done:,} steps in {seconds:.1f}s", highlight=False)

        def waiting() -> int:
            where = (runs.c.status == "active") & (runs.c.wake_at.is_not(None))
            return scalar(conveyor, select(func.count()).select_from(runs).where(where))

        first = max(1, contacts // 10)
        enroll(0, first)
        phase("enroll_10")
        out["waiting_10"], out["rss_10"] = waiting(), rss_mb()
        enroll(first, contacts)
        phase("enroll_rest")
        out["waiting_all"], out["rss_all"] = waiting(), rss_mb()
        clock.advance(timedelta(days=1, seconds=1))
        phase("wake_1")
        clock.advance(timedelta(days=2, seconds=1))
        phase("wake_2")
        out["steps"] = scalar(conveyor, select(func.count()).select_from(steps))
        done = select(func.count()).select_from(runs).where(runs.c.outcome == "completed")
        out["completed"] = scalar(conveyor, done)
        out["steps_per_s"] = out["steps"] / out["seconds"]
        out["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        conveyor.close()
        if ceiling:  # after the RSS figures: the rows read back take memory of their own
            seconds = engine_ceiling(dialect, url, event_ids)
            out["ceiling"] = out["steps"] / seconds
            out["of_ceiling"] = f"{out['steps_per_s'] / out['ceiling']:.0%}"
    if out["steps"] != contacts * STEPS_PER_CONTACT or out["completed"] != contacts:
        raise SystemExit(f"{dialect}: expected {contacts * STEPS_PER_CONTACT} steps: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=float, default=500.0, help="track calls per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send them")
    parser.add_argument("--batch", type=int, default=1, help=">1: send via /v1/batch")
    parser.add_argument("--no-vacuum", action="store_true", help="no VACUUM ANALYZE (PG)")
    parser.add_argument("--part", choices=["engine", "latency", "both"], default="both")
    parser.add_argument("--workers", type=int, default=1, help="engine processes side by side")
    parser.add_argument("--engine-batch", type=int, default=1000, help="events/runs per tick")
    parser.add_argument(
        "--no-ceiling", action="store_true", help="skip writing the engine's rows raw"
    )
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed to serve (e.g. --no-worker)"
    )
    args = parser.parse_args()
    facts_before = machine()
    results: dict[str, dict[str, Any]] = {d: {} for d in dialects(args.dialect)}
    for dialect in results:
        if args.part != "latency":
            bench = (
                dialect,
                args.contacts,
                not args.no_vacuum,
                args.workers,
                args.engine_batch,
                not args.no_ceiling,
            )
            if args.workers > 1:  # a pool's process may not start processes of its own
                results[dialect] |= engine_bench(*bench)
            else:
                with multiprocessing.get_context("spawn").Pool(1) as pool:
                    results[dialect] |= pool.apply(engine_bench, bench)
        if args.part != "engine":
            results[dialect] |= trigger_latency(
                dialect,
                LATENCY_AUTOMATION,
                "lat_go",
                rate=args.rate,
                seconds=args.seconds,
                batch=args.batch,
                serve_args=args.serve_arg,
            )

    for result in results.values():
        if "workers" in result:
            result["workers_batch"] = f"{result['workers']} / {result['batch']:,}"
    n, via = args.contacts, "/v1/track" if args.batch == 1 else f"/v1/batch x {args.batch}"
    rows = [  # label, result key, format
        (f"contacts through the 10-node automation ({STEPS_PER_CONTACT} steps each)", "contacts"),
        ("contact-steps (rows in `steps`)", "steps"),
        ("engine processes side by side / events or runs per tick", "workers_batch"),
        ("engine seconds (dispatch + execute until idle)", "seconds", "{:,.1f}"),
        ("contact-steps/s, all phases (target >= 20,000)", "steps_per_s"),
        ("  ceiling: the engine's rows written raw, as contact-steps/s", "ceiling"),
        ("  the engine's rate, of that ceiling", "of_ceiling"),
        ("  steps/s: enroll first 10% (4 steps each)", "rate_enroll_10"),
        ("  steps/s: enroll other 90% (4 steps each)", "rate_enroll_rest"),
        ("  steps/s: after wait 1 day (3 steps each)", "rate_wake_1"),
        ("  steps/s: after wait 2 days (5 steps each)", "rate_wake_2"),
        ("worker RSS MB after setup", "rss_base"),
        ("runs waiting (timers in the DB), 10% enrolled", "waiting_10"),
        ("  worker RSS MB then", "rss_10"),
        ("runs waiting (timers in the DB), all enrolled", "waiting_all"),
        ("  worker RSS MB then", "rss_all"),
        ("worker peak RSS MB (getrusage)", "rss_peak"),
        (f"trigger latency: track calls sent ({via})", "sent"),
        ("trigger latency: achieved calls/s", "calls_per_s"),
        ("trigger latency: runs started (if fewer: the rest count as waited so far)", "runs"),
        ("trigger latency p50 ms", "p50"),
        ("trigger latency p99 ms (target < 250)", "p99"),
        ("HTTP response p50 ms", "http_p50"),
        ("HTTP response p99 ms", "http_p99"),
        ("HTTP response max ms", "http_max"),
        ("HTTP requests failed", "failed"),
    ]
    title = f"Conveyor engine benchmark, {n:,} contacts"
    print_table(title, rows, results, facts_before)


if __name__ == "__main__":
    main()
