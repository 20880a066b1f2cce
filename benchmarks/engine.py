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
3. Trigger latency: `conveyor serve` (real clock) on a fresh database and a free port, an
   automation whose first node is add_tag applied and activated over the HTTP API, then
   `/v1/track` calls (one new user each; `--batch K`: K per `/v1/batch`) paced at a steady
   rate. Latency is `steps.at` of each run's first step minus its event's `received_at`, both
   from the database (both are stamped when their transaction starts, so the commit of the
   engine's tick comes on top). Beside it, the HTTP response times the senders saw, and how
   many requests failed ("database is locked" among them); `--serve-arg` is passed to `serve`.

    .venv/bin/python benchmarks/engine.py [--contacts 100000] [--dialect sqlite|postgresql|both]
        [--rate 500] [--seconds 15] [--batch 1] [--part engine|latency|both] [--no-vacuum]
        [--serve-arg=--no-worker]

Databases: a temp-dir SQLite file, or `conveyor_bench_engine_*` on 127.0.0.1:5432 (dropped).
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from statistics import quantiles
from typing import Any

import httpx
import psycopg
import yaml
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store.schema import events, runs, steps

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = os.path.dirname(sys.executable)
log = Console(stderr=True)
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


@contextlib.contextmanager
def database(dialect: str, purpose: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A SQLAlchemy URL and the env for `conveyor serve`, on a throwaway database."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix="conveyor-bench-engine-") as tmp:
            yield f"sqlite:///{tmp}/conveyor.db", {"CONVEYOR_DATA_DIR": tmp}
        return
    name = f"conveyor_bench_engine_{purpose}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url, {"CONVEYOR_DATABASE_URL": url}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def scalar(conveyor: Any, stmt: Any) -> int:
    with conveyor.store.read() as tx:
        return tx.conn.execute(stmt).scalar_one()


def engine_bench(dialect: str, contacts: int, vacuum: bool) -> dict[str, Any]:
    """Runs in a fresh (spawned) process, so that its RSS is the worker's alone."""
    with database(dialect, "throughput") as (url, _):
        clock = SimulatedClock()
        conveyor = bootstrap(Settings(database_url=url), clock=clock)
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        conveyor.catalog.declare_field(workspace, "visits", "number", None, None)
        conveyor.automations.apply(workspace, AUTOMATION)
        conveyor.automations.set_status(workspace, "bench", "active")
        out: dict[str, Any] = {"contacts": contacts, "seconds": 0.0, "rss_base": rss_mb()}

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
            started = time.perf_counter()
            conveyor.engine.run_until_idle(max_rounds=10**7)
            seconds = time.perf_counter() - started
            done = scalar(conveyor, select(func.count()).select_from(steps)) - before
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
    if out["steps"] != contacts * STEPS_PER_CONTACT or out["completed"] != contacts:
        raise SystemExit(f"{dialect}: expected {contacts * STEPS_PER_CONTACT} steps: {out}")
    return out


@contextlib.contextmanager
def server(env: dict[str, str], serve_args: list[str]) -> Iterator[tuple[str, str]]:
    """Run `conveyor serve` on a free port; yield its URL and the admin key it prints once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [f"{BIN}/conveyor", "serve", "--host", "127.0.0.1", "--port", str(port), *serve_args]
    env = {**os.environ, **env, "COLUMNS": "200"}
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "shown only this once" in line:
                key = next(proc.stdout).strip()
                break
        else:
            raise SystemExit("conveyor serve printed no admin key")
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("conveyor serve did not become healthy")
            time.sleep(0.1)
        yield url, key
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def paced(
    url: str, key: str, rate: float, count: int, batch: int, threads: int = 8
) -> dict[str, Any]:
    """Send `count` track calls on a fixed schedule (open loop): one per `/v1/track` request,
    or `batch` per `/v1/batch` request. Returns the achieved calls/s, the HTTP response times
    and the failed requests (counted, not fatal: "database is locked" is what to look for)."""
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    took: list[float] = []

    def call(n: int) -> dict[str, Any]:
        return {"type": "track", "userId": f"lat-{n}", "event": "lat_go", "messageId": f"lat-{n}"}

    def sender(slot: int, start: float) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for n in range(slot * batch, count, threads * batch):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent = time.perf_counter()
                if batch == 1:
                    response = client.post("/v1/track", json=call(n))
                else:
                    group = [call(i) for i in range(n, min(n + batch, count))]
                    response = client.post("/v1/batch", json={"batch": group})
                took.append(time.perf_counter() - sent)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:300]}")

    start = time.perf_counter() + 0.2
    pool = [threading.Thread(target=sender, args=(i, start)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    achieved = count / (time.perf_counter() - start)
    if failures:
        log.print(f"{len(failures)} requests failed, the first: {failures[0]}", highlight=False)
    cuts = quantiles(sorted(t * 1000 for t in took), n=100, method="inclusive")
    return dict(
        calls_per_s=achieved,
        requests=len(took),
        http_p50=cuts[49],
        http_p99=cuts[98],
        http_max=max(took) * 1000,
        failed=len(failures),
        locked=sum("locked" in f for f in failures),
    )


def latency_bench(
    dialect: str, rate: float, seconds: float, batch: int, serve_args: list[str]
) -> dict[str, Any]:
    count = int(rate * seconds)
    with database(dialect, "latency") as (db_url, env), server(env, serve_args) as (url, key):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as admin:
            admin.post("/automations", json=LATENCY_AUTOMATION).raise_for_status()
            admin.patch("/automations/latency", json={"status": "active"}).raise_for_status()
        http = paced(url, key, rate, count, batch)
        reader = bootstrap(Settings(database_url=db_url))
        first = select(steps.c.run_id, func.min(steps.c.id).label("id")).group_by(steps.c.run_id)
        sub = first.subquery()
        query = (
            select(events.c.received_at, steps.c.at)
            .join(runs, runs.c.contact_id == events.c.contact_id)
            .join(sub, sub.c.run_id == runs.c.id)
            .join(steps, steps.c.id == sub.c.id)
            .where(events.c.name == "lat_go")
        )
        deadline = time.monotonic() + (0 if "--no-worker" in serve_args else 120)
        while True:  # wait for the worker to catch up with the last events
            with reader.store.read() as tx:
                rows = tx.conn.execute(query).all()
            if len(rows) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        reader.close()
    ms = sorted((at - received).total_seconds() * 1000 for received, at in rows)
    if len(ms) < 2:  # no worker: the API alone
        return dict(sent=count, runs=len(ms)) | http
    cuts = quantiles(ms, n=100, method="inclusive")
    return dict(sent=count, runs=len(ms), p50=cuts[49], p99=cuts[98]) | http


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        model = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "?")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"nproc {os.cpu_count()}; CPU {model}; Python {platform.python_version()} "
        f"({platform.python_implementation()}); load average {load}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=float, default=500.0, help="track calls per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send them")
    parser.add_argument("--batch", type=int, default=1, help=">1: send via /v1/batch")
    parser.add_argument("--no-vacuum", action="store_true", help="no VACUUM ANALYZE (PG)")
    parser.add_argument("--part", choices=["engine", "latency", "both"], default="both")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="passed on to `conveyor serve`"
    )
    args = parser.parse_args()
    dialects = ["sqlite", "postgresql"] if args.dialect == "both" else [args.dialect]
    facts_before = machine()
    results: dict[str, dict[str, Any]] = {d: {} for d in dialects}
    for dialect in dialects:
        if args.part != "latency":
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                results[dialect] |= pool.apply(
                    engine_bench, (dialect, args.contacts, not args.no_vacuum)
                )
        if args.part != "engine":
            results[dialect] |= latency_bench(
                dialect, args.rate, args.seconds, args.batch, args.serve_arg
            )

    n, via = args.contacts, "/v1/track" if args.batch == 1 else f"/v1/batch x {args.batch}"
    rows = [  # label, result key, format
        (f"contacts through the 10-node automation ({STEPS_PER_CONTACT} steps each)", "contacts"),
        ("contact-steps (rows in `steps`)", "steps"),
        ("engine seconds (dispatch + execute until idle)", "seconds", "{:,.1f}"),
        ("contact-steps/s, all phases (target >= 20,000)", "steps_per_s"),
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
        ("trigger latency: runs measured", "runs"),
        ("trigger latency p50 ms", "p50"),
        ("trigger latency p99 ms (target < 250)", "p99"),
        ("HTTP requests", "requests"),
        ("HTTP response p50 ms", "http_p50"),
        ("HTTP response p99 ms", "http_p99"),
        ("HTTP response max ms", "http_max"),
        ("HTTP requests failed", "failed"),
        ("  of them 'database is locked'", "locked"),
    ]
    table = Table(title=f"Conveyor engine benchmark, {n:,} contacts")
    table.add_column("measurement")
    table.add_column("SQLite", justify="right")
    table.add_column("PostgreSQL", justify="right")
    for label, key, *fmt in rows:
        values = [results.get(d, {}).get(key) for d in ("sqlite", "postgresql")]
        table.add_row(
            label, *("-" if v is None else (fmt or ["{:,.0f}"])[0].format(v) for v in values)
        )
    Console(width=max(120, Console().width)).print(table)
    print(f"at the start: {facts_before}\nat the end:   {machine()}")


if __name__ == "__main__":
    main()
