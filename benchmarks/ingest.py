"""Tracking-ingest benchmark: events/s through the real `POST /v1/batch` HTTP API.

Starts `conveyor serve` as a subprocess on a throwaway database (a temp-dir SQLite file and/or a
fresh PostgreSQL database, dropped afterwards), sends a seeded, pre-serialised workload of
100-call batches (~10% identify of new and known users, ~90% track/page calls for a pool of user
ids, each call with a unique messageId) from a few keep-alive client threads, then counts the
rows of the event log to prove every call, and the system events it caused, was committed.

    .venv/bin/python benchmarks/ingest.py [--events N] [--dialect sqlite|postgresql|both]

`--profile FILE` also records the server with py-spy (raw stacks in FILE.<db>.txt).
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
from common import BIN, database, dialects, log, machine, server
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


def send(url: str, key: str, bodies: list[bytes], threads: int, cap: float) -> dict[str, Any]:
    """POST the bodies from `threads` keep-alive clients until done or `cap` seconds passed.

    Like Segment's SDKs, a batch answered 5xx is sent again (calls are idempotent on messageId,
    and a failed batch was rolled back): at most 5 times, each retry counted in the result."""
    latencies, failures, accepted, retries = [], [], [0] * threads, [0] * threads
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    deadline = time.perf_counter() + cap

    def sender(slot: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
            for i in range(slot, len(bodies), threads):  # round-robin: matches the shards
                if time.perf_counter() > deadline or failures:
                    return
                for attempt in range(6):
                    sent_at = time.perf_counter()
                    response = client.post("/v1/batch", content=bodies[i])
                    latencies.append(time.perf_counter() - sent_at)
                    if response.status_code < 500 or attempt == 5:
                        break
                    retries[slot] += 1
                    time.sleep(0.05 * 2**attempt)
                reply = response.json() if response.status_code == 200 else {}
                if not reply or reply["errors"] or reply["duplicates"]:
                    failures.append(f"batch {i}: {response.status_code} {response.text[:500]}")
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
        "seconds": time.perf_counter() - start,
        "retries": sum(retries),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
    }


def count_rows(url: str) -> dict[str, int]:
    """Rows in the log: calls (track, identify, page…) and system events; contacts too."""
    engine = create_engine(url)
    with engine.connect() as conn:
        kinds = "CASE WHEN kind = 'system' THEN 'system' ELSE 'call' END"
        rows = dict(conn.execute(text(f"SELECT {kinds}, count(*) FROM events GROUP BY 1")).all())
        contacts = conn.execute(text("SELECT count(*) FROM contacts")).scalar_one()
    engine.dispose()
    return {f"{k}_rows": rows.get(k, 0) for k in ("call", "system")} | {"contacts": contacts}


def bench(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    shards = args.threads if args.disjoint_users else 1
    warmup = workload(
        args.warmup * args.batch, args.batch, args.users, args.seed + 1, "warm", shards
    )
    bodies = workload(args.events, args.batch, args.users, args.seed, "bench", shards)
    serve_args = () if args.with_worker else ("--no-worker",)
    with database(dialect, "ingest") as (db_url, env), server(env, serve_args) as live:
        proc, url, key = live.proc, live.url, live.key
        log.print(f"{dialect}: server pid {proc.pid}, sending {len(bodies)} batches")
        warm = send(url, key, warmup, args.threads, args.time_cap)
        spy = None
        if args.profile:  # py-spy (from the venv) samples the server during the timed run
            py_spy = shutil.which("py-spy", path=BIN) or "py-spy"
            options = f"--format raw --rate 200 -p {proc.pid} -o {args.profile}.{dialect}.txt"
            spy = subprocess.Popen([py_spy, "record", *options.split()], stdout=sys.stderr)
            time.sleep(1)
        run = send(url, key, bodies, args.threads, args.time_cap)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            spy.wait(timeout=60)
        rows = count_rows(db_url)
    log.print(f"{dialect}: {run['calls']:,} calls in {run['seconds']:.1f}s")
    sent = warm["calls"] + run["calls"]
    # Each accepted call is one non-system row; the system events it caused come on top.
    if rows["call_rows"] != sent or rows["call_rows"] + rows["system_rows"] < sent:
        raise SystemExit(f"{dialect}: sent {sent:,} calls but the log holds {rows}")
    if rows["system_rows"] < 2 * rows["contacts"]:  # contact.created + field.changed(external_id)
        raise SystemExit(f"{dialect}: system events missing for new contacts: {rows}")
    return {"database": dialect, **run, **rows, "retries": warm["retries"] + run["retries"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="calls to send (timed)")
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batch", type=int, default=100, help="calls per /v1/batch request")
    parser.add_argument("--threads", type=int, default=4, help="concurrent keep-alive clients")
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
    args = parser.parse_args()
    facts_before = machine()
    results = [bench(dialect, args) for dialect in dialects(args.dialect)]

    table = Table(
        title=f"Conveyor ingest: POST /v1/batch × {args.batch} calls, {args.threads} client "
        f"threads, {args.users:,} {'disjoint ' if args.disjoint_users else ''}users; "
        f"log rows include {args.warmup} warm-up batches"
    )
    columns = "database|calls timed|seconds|events/s|p50 ms|p99 ms|5xx retries|call rows|"
    for column in (columns + "system rows|contacts").split("|"):
        table.add_column(column, justify="left" if column == "database" else "right")
    for r in results:
        rate, p50, p99 = r["calls"] / r["seconds"], r["p50"] * 1000, r["p99"] * 1000
        table.add_row(
            r["database"],
            f"{r['calls']:,}",
            f"{r['seconds']:.1f}",
            *(f"{value:,.0f}" for value in (rate, p50, p99)),
            *(f"{r[name]:,}" for name in ("retries", "call_rows", "system_rows", "contacts")),
        )
    Console(width=max(120, Console().width)).print(table)
    print(f"at the start: {facts_before}\nat the end:   {machine()}")


if __name__ == "__main__":
    main()
