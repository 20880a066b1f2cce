"""Tracking-ingest benchmark: events/s through the real `POST /v1/batch` HTTP API.

Starts `conveyor serve` as a subprocess on a throwaway database (a temp-dir SQLite file and/or a
fresh PostgreSQL database, dropped afterwards), sends a seeded, pre-serialised workload of
100-call batches (~10% identify of new and known users, ~90% track/page calls for a pool of user
ids, each call with a unique messageId) from a few keep-alive client threads, then counts the
rows of the event log to prove every call, and the system events it caused, was committed.

    .venv/bin/python benchmarks/ingest.py [--events N] [--dialect sqlite|postgresql|both]

`--profile FILE` also records the server with py-spy (raw stacks in FILE.<db>.<mode>.txt).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import psycopg
from common import BIN, database, dialects, log, machine, server
from ingest_ceilings import bare_server, cpu_seconds, event_rows, raw_inserts
from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, text

KINDS, WEIGHTS = ["identify", "order_completed", "page", "cart_updated"], [10, 9, 54, 27]


def workload(
    events: int, batch: int, users: int, seed: int, prefix: str, shards: int = 1
) -> list[bytes]:
    """Pre-serialised /v1/batch bodies: the same calls for the same seed, unique messageIds.

    With `shards` > 1, batch i only names users u with u % shards == i % shards, so batches
    sent by different threads (see `send`) never touch the same contact at the same time."""
    rng = random.Random(seed)
    identified: set[int] = set()
    calls: list[dict[str, Any]] = []
    for n in range(events):
        user = rng.randrange(users // shards) * shards + (n // batch) % shards
        call: dict[str, Any] = {"userId": f"user-{user}", "messageId": f"{prefix}-{n:09d}"}
        call["context"] = {"library": {"name": "conveyor-bench", "version": "1"}}
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "identify":  # a new user (email + 3 traits) or a known one again
            traits = {"email": f"user{user}@example.com", "plan": rng.choice(["free", "pro"])}
            if user not in identified:
                identified.add(user)
                traits |= {"firstName": f"First{user}", "lastName": f"Last{user}"}
            call |= {"type": "identify", "traits": traits}
        elif kind == "page":
            path = rng.choice(["/", "/pricing", "/shop", "/blog/launch", "/cart"])
            call |= {"type": "page", "name": path, "properties": {"path": path, "referrer": ""}}
        elif kind == "order_completed":
            revenue = round(rng.uniform(5, 500), 2)
            props = {"order_id": f"o-{n}", "revenue": revenue, "currency": "EUR", "items": 2}
            call |= {"type": "track", "event": kind, "properties": props}
        else:
            props = {"cart_id": f"c-{user}", "sku": f"sku-{rng.randrange(300)}", "quantity": 1}
            call |= {"type": "track", "event": kind, "properties": props}
        calls.append(call)
    return [orjson.dumps({"batch": calls[i : i + batch]}) for i in range(0, len(calls), batch)]


def send(
    url: str, key: str, bodies: list[tuple[str, bytes]], threads: int, cap: float
) -> dict[str, Any]:
    """POST the (path, body) pairs from `threads` keep-alive clients until done or `cap` seconds
    passed.

    Like Segment's SDKs, a request answered 5xx is sent again (calls are idempotent on messageId,
    and a failed request was rolled back): at most 5 times, each retry counted in the result."""
    latencies, failures, accepted, retries = [], [], [0] * threads, [0] * threads
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deadline = time.perf_counter() + cap

    def sender(slot: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i in range(slot, len(bodies), threads):  # round-robin: matches the shards
                if time.perf_counter() > deadline or failures:
                    return
                path, body = bodies[i]
                for attempt in range(6):
                    sent_at = time.perf_counter()
                    response = client.post(path, content=body)
                    latencies.append(time.perf_counter() - sent_at)
                    if response.status_code < 500 or attempt == 5:
                        break
                    retries[slot] += 1
                    time.sleep(0.05 * 2**attempt)
                reply = response.json() if response.status_code == 200 else {}
                if not reply or reply.get("errors") or reply["duplicates"]:
                    failures.append(f"request {i}: {response.status_code} {response.text[:500]}")
                    return
                accepted[slot] += reply["accepted"]

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(sender, range(threads)))
    if failures:
        raise SystemExit(f"ingest failed: {failures[0]}")
    latencies.sort()
    return {
        "calls": sum(accepted),
        "requests": len(latencies),
        "seconds": time.perf_counter() - start,
        "retries": sum(retries),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def batches(bodies: list[bytes]) -> list[tuple[str, bytes]]:
    return [("/v1/batch", body) for body in bodies]


def singles(bodies: list[bytes]) -> list[tuple[str, bytes]]:
    """Each call of these batches alone, to its own endpoint (/v1/track, /v1/page…)."""
    out = []
    for body in bodies:
        for call in orjson.loads(body)["batch"]:
            out.append((f"/v1/{call['type']}", orjson.dumps(call)))
    return out


def send_cpu(
    pid: int, url: str, bodies: list[tuple[str, bytes]], threads: int, cap: float
) -> dict[str, Any]:
    before = cpu_seconds(pid)
    return send(url, "-", bodies, threads, cap) | {"cpu": cpu_seconds(pid) - before}


def timed(proc: subprocess.Popen[bytes], work: Any) -> dict[str, Any]:
    """`work()`'s result with the server's CPU seconds while it ran."""
    before = cpu_seconds(proc.pid)
    result = work()
    return result | {"cpu": cpu_seconds(proc.pid) - before}


def analyze(url: str) -> None:
    """Not timed: what autovacuum does within its first minute on a default PostgreSQL. This
    machine's server runs with autovacuum off (`SHOW autovacuum`), and without statistics on a
    fresh log the planner reads every event of the workspace for each message-id look-up (a
    bitmap scan on `workspace_id` alone, estimated at 14 rows): 9 ms at 24,000 events, growing
    with the log — the largest single cost of the PostgreSQL writer before this was found."""
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def count_rows(url: str) -> dict[str, int]:
    """Rows in the log: calls (track, identify, page…) and system events; contacts too."""
    engine = create_engine(url)
    with engine.connect() as conn:
        kinds = "CASE WHEN kind = 'system' THEN 'system' ELSE 'call' END"
        rows = dict(conn.execute(text(f"SELECT {kinds}, count(*) FROM events GROUP BY 1")).all())
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar_one()
    engine.dispose()
    return {f"{k}_rows": rows.get(k, 0) for k in ("call", "system")} | {"contacts": contacts}


@contextlib.contextmanager
def profiled(profile: str | None, pid: int, name: str) -> Iterator[None]:
    """py-spy (from the venv) samples the server meanwhile: raw stacks in `profile`.<name>.txt."""
    if not profile:
        yield
        return
    py_spy = shutil.which("py-spy", path=BIN) or "py-spy"
    options = f"--format raw --rate 200 -p {pid} -o {profile}.{name}.txt"
    spy = subprocess.Popen([py_spy, "record", *options.split()], stdout=sys.stderr)
    time.sleep(1)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
        spy.wait(timeout=60)


def bench(dialect: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    shards = args.threads if args.disjoint_users else 1
    warmup = workload(
        args.warmup * args.batch, args.batch, args.users, args.seed + 1, "warm", shards
    )
    bodies = workload(args.events, args.batch, args.users, args.seed, "bench", shards)
    one_by_one = singles(workload(args.track_calls, args.batch, args.users, args.seed, "one"))
    serve_args = () if args.with_worker else ("--no-worker",)
    serve_args += ("--api-workers", str(args.api_workers)) if args.api_workers > 1 else ()
    out: list[dict[str, Any]] = []
    with (
        database(dialect, "ingest") as (db_url, env),
        server(env, serve_args, ready_seconds=120) as live,
    ):
        proc, url, key = live.proc, live.url, live.key
        log.print(f"{dialect}: server pid {proc.pid}, sending {len(bodies)} batches")
        warm = send(url, key, batches(warmup), args.threads, args.time_cap)
        if dialect == "postgresql" and not args.no_analyze:
            analyze(db_url)
        with profiled(args.profile, proc.pid, f"{dialect}.batch"):
            run = timed(proc, lambda: send(url, key, batches(bodies), args.threads, args.time_cap))
        single: dict[str, Any] = {}
        if one_by_one:
            log.print(f"{dialect}: {len(one_by_one):,} single calls, {args.track_threads} clients")
            with profiled(args.profile, proc.pid, f"{dialect}.single"):
                single = timed(
                    proc, lambda: send(url, key, one_by_one, args.track_threads, args.time_cap)
                )
        rows = count_rows(db_url)
        log.print(f"{dialect}: {rows}; raw inserts of the same rows")
        raw_seconds, raw_cpu = raw_inserts(dialect, event_rows(db_url))
    log.print(f"{dialect}: {run['calls']:,} calls in {run['seconds']:.1f}s")
    sent = warm["calls"] + run["calls"] + single.get("calls", 0)
    # Each accepted call is one non-system row; the system events it caused come on top.
    if rows["call_rows"] != sent or rows["call_rows"] + rows["system_rows"] < sent:
        raise SystemExit(f"{dialect}: sent {sent:,} calls but the log holds {rows}")
    if rows["system_rows"] < 2 * rows["contacts"]:  # contact.created + field.changed(external_id)
        raise SystemExit(f"{dialect}: system events missing for new contacts: {rows}")
    base = {"database": dialect, **rows}
    out.append(base | {"what": "Conveyor /v1/batch", **run})
    if single:
        out.append(base | {"what": "Conveyor single calls", **single})
    # The same calls inserted raw: `sent` calls' rows took `raw_seconds`.
    raw = {"what": "raw inserts, same rows", "calls": sent, "seconds": raw_seconds}
    out.append(base | raw | ({"cpu": raw_cpu} if raw_cpu else {}))
    bare_tmp = tempfile.TemporaryDirectory(prefix="conveyor-bench-bare-")
    with bare_tmp as tmp, bare_server(tmp) as (url, pid):
        send(url, "-", batches(warmup), args.threads, args.time_cap)
        bare = send_cpu(pid, url, batches(bodies), args.threads, args.time_cap)
        out.append(base | {"what": "bare FastAPI /v1/batch", **bare})
        if one_by_one:
            bare = send_cpu(pid, url, one_by_one, args.track_threads, args.time_cap)
            out.append(base | {"what": "bare FastAPI single calls", **bare})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="calls to send (timed)")
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batch", type=int, default=100, help="calls per /v1/batch request")
    parser.add_argument("--threads", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--track-calls", type=int, default=20_000, help="single calls (timed)")
    parser.add_argument("--track-threads", type=int, default=8, help="clients of single calls")
    parser.add_argument("--api-workers", type=int, default=1, help="API processes (PostgreSQL)")
    parser.add_argument("--users", type=int, default=20_000, help="size of the user-id pool")
    parser.add_argument("--warmup", type=int, default=20, help="untimed batches sent first")
    parser.add_argument("--time-cap", type=float, default=300.0, help="seconds per database")
    parser.add_argument("--seed", type=int, default=42)
    disjoint = "give each client thread its own users (no two requests touch one contact at once)"
    parser.add_argument("--disjoint-users", action="store_true", help=disjoint)
    parser.add_argument(
        "--with-worker", action="store_true", help="serve with its worker (default: API alone)"
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy the server into FILE.<db>.txt")
    no_analyze = "PostgreSQL: no VACUUM ANALYZE after the warm-up (autovacuum's job; see `analyze`)"
    parser.add_argument("--no-analyze", action="store_true", help=no_analyze)
    args = parser.parse_args()
    facts_before = machine()
    results = [row for dialect in dialects(args.dialect) for row in bench(dialect, args)]

    table = Table(
        title=f"Conveyor ingest, `conveyor serve`{' with its worker' if args.with_worker else ''}"
        f" ({args.api_workers} API process(es)): /v1/batch × {args.batch} calls from "
        f"{args.threads} clients; single calls from {args.track_threads} clients; "
        f"{args.users:,} {'disjoint ' if args.disjoint_users else ''}users"
    )
    columns = "database|what|calls|seconds|requests/s|events/s|vs ceiling|p50 ms|p99 ms|"
    for column in (columns + "server CPU s|events/CPU-s").split("|"):
        table.add_column(column, justify="left" if column in ("database", "what") else "right")
    ceilings: dict[tuple[str, str], float] = {}
    for r in results:
        rate = r["calls"] / r["seconds"]
        kind = "single" if "single" in r["what"] else "batch"
        if r["what"].startswith("bare"):
            ceilings[(r["database"], kind)] = rate
        elif r["what"].startswith("raw"):
            ceilings[(r["database"], "raw")] = rate
    for r in results:
        rate = r["calls"] / r["seconds"]
        kind = "single" if "single" in r["what"] else "batch"
        versus = ""
        if r["what"].startswith("Conveyor"):
            http = ceilings.get((r["database"], kind))
            raw = ceilings.get((r["database"], "raw"))
            versus = " ".join(
                f"{rate / c:.0%} {name}"
                for name, c in (("of HTTP", http), ("of raw", raw if kind == "batch" else None))
                if c
            )
        requests = r.get("requests")
        table.add_row(
            r["database"],
            r["what"],
            f"{r['calls']:,}",
            f"{r['seconds']:.1f}",
            f"{requests / r['seconds']:,.0f}" if requests else "",
            f"{rate:,.0f}",
            versus,
            f"{r['p50'] * 1000:,.1f}" if "p50" in r else "",
            f"{r['p99'] * 1000:,.1f}" if "p99" in r else "",
            f"{r['cpu']:.1f}" if "cpu" in r else "",
            f"{r['calls'] / r['cpu']:,.0f}" if r.get("cpu") else "",
        )
    Console(width=max(160, Console().width)).print(table)
    print(f"at the start: {facts_before}\nat the end:   {machine()}")


if __name__ == "__main__":
    main()
