"""What the benchmarks share: the machine they ran on, throwaway databases, `conveyor serve` as a
subprocess, paced tracking calls and the trigger latency they cause, and the one table printed.

The scripts import it as `common` (run them as `python benchmarks/NAME.py`: the script's folder
is then first on sys.path, in spawned child processes too).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from statistics import quantiles
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

import conveyor
from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from conveyor.store.schema import events, log_cursors, runs, steps

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = os.path.dirname(sys.executable)
# The server subprocess must run the same code as this process (a worktree's src, say).
SRC = os.path.dirname(os.path.dirname(os.path.abspath(conveyor.__file__)))
DIALECTS = ("sqlite", "postgresql")
log = Console(stderr=True)


def dialects(choice: str) -> list[str]:
    """The `--dialect` option's value as a list: `both` is SQLite, then PostgreSQL."""
    return list(DIALECTS) if choice == "both" else [choice]


# --- the machine -------------------------------------------------------------------------------


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def load_1min() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def machine() -> str:
    with open("/proc/cpuinfo") as info:
        model = next((ln.split(":", 1)[1].strip() for ln in info if "model name" in ln), "?")
    return (
        f"nproc {os.cpu_count()}; CPU {model}; Python {platform.python_version()} "
        f"({platform.python_implementation()}); load average {load_average()}"
    )


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- databases and the server ------------------------------------------------------------------


@contextlib.contextmanager
def database(dialect: str, purpose: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A SQLAlchemy URL and the env for `conveyor serve`, on a throwaway database: a temp-dir
    SQLite file, or `conveyor_bench_<purpose>_<pid>` on 127.0.0.1:5432, dropped afterwards
    (the pid keeps two runs on one server from dropping each other's database)."""
    if dialect == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"conveyor-bench-{purpose}-") as tmp:
            yield f"sqlite:///{tmp}/conveyor.db", {"CONVEYOR_DATA_DIR": tmp}
        return
    name = f"conveyor_bench_{purpose}_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url, {"CONVEYOR_DATABASE_URL": url}
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@dataclass(frozen=True)
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    key: str  # the default workspace's admin key, printed once on the first start


@contextlib.contextmanager
def server(
    env: dict[str, str], serve_args: Sequence[str] = (), ready_seconds: float = 30
) -> Iterator[Server]:
    """Run `conveyor serve` (the API, and the worker process it starts) on a free port;
    `serve_args` go to `serve` (e.g. `--no-worker`); healthy within `ready_seconds`.

    Its output goes to a file, not a pipe: a pipe drained by a thread of this (busy, GIL-bound)
    process filled up during the single-call run, and the server's one log line per request
    then blocked its event loop until this process's reader got the GIL — a fifth of the
    server's busy samples (py-spy, README: Performance)."""
    port = free_port()
    path = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-serve-") as tmp:
        out_path = os.path.join(tmp, "serve.log")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [f"{BIN}/conveyor", "serve", "--host", "127.0.0.1", "--port", str(port)]
                + list(serve_args),
                env={**os.environ, **env, "PYTHONPATH": path, "COLUMNS": "200"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def tail() -> str:
            with open(out_path, encoding="utf-8", errors="replace") as log_file:
                return "".join(deque(log_file, maxlen=80))

        try:
            key, deadline = None, time.monotonic() + ready_seconds
            while key is None:
                with open(out_path, encoding="utf-8", errors="replace") as log_file:
                    lines = log_file.read().splitlines()
                for n, line in enumerate(lines[:-1]):
                    if "shown only this once" in line:
                        key = lines[n + 1].strip()
                if key is None:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("conveyor serve printed no admin key")
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}"
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("conveyor serve did not become healthy")
                time.sleep(0.1)
            yield Server(proc, url, key)
        except BaseException:
            stop(proc)
            log.print("conveyor serve output, last lines:\n" + tail(), highlight=False)
            raise
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not exited in 30 s (a worker deep in a backlog)."""
    proc.terminate()  # a no-op when it has already exited
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


# --- paced tracking calls and trigger latency --------------------------------------------------


def paced(
    url: str,
    key: str,
    make_call: Callable[[int], dict[str, Any]],
    rate: float,
    count: int,
    batch: int,
    threads: int = 8,
) -> dict[str, Any]:
    """Send calls 0..count-1 on a fixed schedule (open loop: call n is due at n / rate), one per
    `/v1/track` request, or `batch` per `/v1/batch` request. Returns the achieved calls/s, the
    HTTP response times the senders saw, and the failed requests (counted, not fatal: "database
    is locked" is what to look for)."""
    headers = {"Authorization": f"Bearer {key}"}
    failures: list[str] = []
    took: list[float] = []

    def sender(slot: int, start: float) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
            for n in range(slot * batch, count, threads * batch):
                delay = start + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                if batch == 1:
                    response = client.post("/v1/track", json=make_call(n))
                else:
                    group = [make_call(i) for i in range(n, min(n + batch, count))]
                    response = client.post("/v1/batch", json={"batch": group})
                took.append(time.perf_counter() - began)
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
    cuts = quantiles(took, n=100, method="inclusive") if len(took) > 1 else [0.0] * 99
    return {
        "calls_per_s": achieved,
        "http_p50": cuts[49] * 1000,
        "http_p99": cuts[98] * 1000,
        "http_max": max(took, default=0.0) * 1000,
        "failed": len(failures),
    }


def trigger_latency(
    dialect: str,
    automation: dict[str, Any],
    event: str,
    *,
    rate: float,
    seconds: float,
    batch: int,
    wait: float = 120.0,
    purpose: str = "latency",
    serve_args: Sequence[str] = (),
    warmup: float = 2.0,
) -> dict[str, Any]:
    """`conveyor serve` (real clock) on a fresh database, `automation` applied and activated over
    the HTTP API, then `event` tracked for a new user each, paced at `rate` for `seconds`.

    Latency is `steps.at` of each run's first step minus its event's `received_at`, both from
    the database (both are stamped when their transaction starts, so the commit of the engine's
    tick comes on top). Right after the last call: the backlog, events past the engine's log
    cursor (`event` ones, and all rows of the log) and runs due (`wake_at` passed) but not
    advanced. Then up to `wait` seconds for the
    worker to catch up; a run still not started then counts with the time it had waited (a
    lower bound), and `unfinished` says how many did.

    First, `warmup` seconds of the same traffic that are not measured: the first events after
    an automation is activated pay for cold caches (its parsed version, the trigger index,
    SQLAlchemy's statement cache) — up to ~0.5 s in the first second on this machine."""
    count = int(rate * seconds)

    def make_call(n: int) -> dict[str, Any]:
        return {"type": "track", "userId": f"lat-{n}", "event": event, "messageId": f"lat-{n}"}

    def warm_call(n: int) -> dict[str, Any]:
        return {"type": "track", "userId": f"warm-{n}", "event": event, "messageId": f"warm-{n}"}

    if "--no-worker" in serve_args:
        wait = 0.0  # the API alone: nobody runs the engine
    with database(dialect, purpose) as (db_url, env), server(env, serve_args) as live:
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {live.key}"}) as c:
            c.post("/automations", json=automation).raise_for_status()
            c.patch(
                f"/automations/{automation['key']}", json={"status": "active"}
            ).raise_for_status()
        if warmup > 0:
            paced(live.url, live.key, warm_call, rate, int(rate * warmup), batch)
        load_before = load_1min()
        http = paced(live.url, live.key, make_call, rate, count, batch)
        sent_at = time.monotonic()
        reader = bootstrap(Settings(database_url=db_url))
        position = select(log_cursors.c.position).where(log_cursors.c.name == "engine")
        past = events.c.id > func.coalesce(position.scalar_subquery(), 0)
        undispatched = select(func.count()).select_from(events).where(past)
        due = (
            select(func.count())
            .select_from(runs)
            .where(runs.c.status == "active", runs.c.wake_at <= datetime.now(UTC))
        )
        with reader.store.db.read_connection() as conn:
            backlog_events = conn.execute(undispatched.where(events.c.name == event)).scalar_one()
            backlog_log = conn.execute(undispatched).scalar_one()
            backlog_runs = conn.execute(due).scalar_one()
        load_sent = load_1min()
        first = select(steps.c.run_id, func.min(steps.c.id).label("id")).group_by(steps.c.run_id)
        sub = first.subquery()
        latest = (  # every event with its run's first step, if that ran yet (outer joins)
            select(events.c.received_at, steps.c.at)
            .outerjoin(runs, runs.c.contact_id == events.c.contact_id)
            .outerjoin(sub, sub.c.run_id == runs.c.id)
            .outerjoin(steps, steps.c.id == sub.c.id)
            .where(events.c.name == event, events.c.message_id.like("lat-%"))
        )
        catch_up: float | None = None
        while True:  # wait for the worker to catch up with the last events
            with reader.store.db.read_connection() as conn:
                rows = conn.execute(latest).all()
            if len(rows) >= count and all(at is not None for _, at in rows):
                catch_up = time.monotonic() - sent_at
                break
            if time.monotonic() - sent_at > wait:
                break
            time.sleep(0.25)
        now = datetime.now(UTC)
        reader.close()
    # A run not started yet counts with the time it has waited so far: a lower bound.
    ms = sorted(((at or now) - got).total_seconds() * 1000 for got, at in rows)
    cuts = quantiles(ms, n=100, method="inclusive")
    ran = sum(at is not None for _, at in rows)
    return http | {
        "sent": count,
        "runs": ran,
        "unfinished": count - ran,
        "p50": cuts[49],
        "p99": cuts[98],
        "backlog_events": backlog_events,  # the tracked event only
        "backlog_log": backlog_log,  # every row of the log, system events too
        "backlog_runs": backlog_runs,
        "catch_up": catch_up,
        "load_latency": f"{load_before} -> {load_sent}",  # 1-minute load average
    }


# --- the table ---------------------------------------------------------------------------------


def print_table(
    title: str,
    rows: Sequence[tuple[Any, ...]],
    results: dict[str, dict[str, Any]],
    started: str,
) -> None:
    """The one table a benchmark prints: a row per measurement, a column per dialect, and a
    target column when any row names one; then the machine at the start and at the end.

    A row is `(label, key[, format[, target]])`: the value `results[dialect][key]` goes through
    `format` (default `{:,.0f}`); a string value is printed as it is, a missing one as `-`."""
    with_targets = any(len(row) > 3 and row[3] for row in rows)
    lines = []
    for label, key, *rest in rows:
        fmt = rest[0] if rest and rest[0] else "{:,.0f}"
        cells = [label]
        for dialect in DIALECTS:
            value = results.get(dialect, {}).get(key)
            cells.append(
                "-" if value is None else value if isinstance(value, str) else fmt.format(value)
            )
        if with_targets:
            cells.append(rest[1] if len(rest) > 1 else "")
        lines.append(cells)
    headers = ["measurement", "SQLite", "PostgreSQL", "target"][: len(lines[0])]
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header == "measurement" else "right")
    for cells in lines:
        table.add_row(*cells)
    # Wide enough that no row wraps (a narrow terminal wraps the lines instead).
    widths = [max(len(c) for c in column) for column in zip(headers, *lines, strict=True)]
    needed = sum(w + 3 for w in widths) + 1
    Console(width=max(120, needed)).print(table)
    print(f"at the start: {started}\nat the end:   {machine()}")
