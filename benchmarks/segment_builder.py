"""Segment builder benchmark: the live count the builder asks for on every edit, at 1M contacts.

Loads (or reuses, with --keep) the segments benchmark's seeded SQLite database
(benchmarks/segments.py: N contacts, M events; here 2M events by default to keep the run short),
serves the real app with uvicorn on 127.0.0.1, signs a marketer in, and times what the builder
calls: `POST /app/segments/count.json` for each of the segments benchmark's shapes and scenario
5's segment (median of 3 after a warm-up), beside the segments service's own `count` for the
same condition (the HTTP cost is the difference) and the segments benchmark's own measurement
(its compiled `count_query` on a bare connection), taken in the same run on the same machine, and `GET /app/segments/vocabulary.json` (its
event and tag names come from a loose index scan of the log).

Target (the issue): a count within the segments benchmark's time, < 1 s for the mixed segment.

    .venv/bin/python benchmarks/segment_builder.py [--contacts 1000000] [--events 2000000] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import segments as bench  # noqa: E402  (the segments benchmark: its seeding and shapes)

from conveyor.api.app import create_app  # noqa: E402
from conveyor.bootstrap import bootstrap  # noqa: E402
from conveyor.clock import SimulatedClock  # noqa: E402
from conveyor.domain.conditions import parse_condition  # noqa: E402
from conveyor.settings import Settings  # noqa: E402
from conveyor.store.conditions import ConditionSQL  # noqa: E402
from conveyor.store.database import make_engine  # noqa: E402

PASSWORD = "benchmark password"
GOOD = {  # scenario 5, examples/segments/good-customers.yaml
    "event": "order_completed",
    "where": [{"property": "items", "op": "gte", "value": 1}],
    "count": {"gte": 3},
    "within": "90 days",
}
TARGET_S = 1.0


def bare_count(url: str, raw: Any) -> int:
    """The segments benchmark's own measurement: its compiled count, run on a connection."""
    stmt = ConditionSQL("sqlite", bench.WS, bench.NOW, lists={}).count_query(
        parse_condition(raw, bench.FIELDS)
    )
    with make_engine(url).connect() as conn:
        return conn.execute(stmt).scalar_one()


def timed(work: Callable[[], Any], runs: int = 3) -> tuple[float, Any]:
    result, times = work(), []
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return median(times), result


class Served:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]})

    def __enter__(self) -> Served:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def signed_in(url: str, email: str) -> tuple[httpx.Client, dict[str, str]]:
    client = httpx.Client(base_url=url, headers={"Origin": url}, timeout=120)
    page = client.get("/app/signin").text
    token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    client.post("/app/signin", data={"email": email, "password": PASSWORD, "csrf": token})
    page = client.get("/app/segments/new").text
    csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    return client, {"X-CSRF-Token": csrf, "Accept": "application/json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database for a rerun")
    args = parser.parse_args()
    log, started = Console(stderr=True, markup=False), time.perf_counter()
    rows: list[tuple[str, ...]] = []

    def put(label: str, dialect: str, value: str) -> None:
        log.print(f"{time.perf_counter() - started:6.0f}s {label}: {value}")
        if label.startswith("load"):
            rows.append((label, value, "", "", ""))

    loads = [os.getloadavg()]
    url = bench.prepare("sqlite", args.contacts, args.events, put)
    try:
        with tempfile.TemporaryDirectory() as data:
            conveyor = bootstrap(
                Settings(database_url=url, data_dir=Path(data)), clock=SimulatedClock(bench.NOW)
            )
            try:
                workspace = conveyor.workspaces.all()[0]
                conveyor.signin.create_user(workspace, "mia@bench.example", "marketer", PASSWORD)
                with Served(create_app(conveyor)) as served:
                    client, headers = signed_in(served.url, "mia@bench.example")
                    with contextlib.closing(client):
                        seconds, vocab = timed(
                            lambda: client.get("/app/segments/vocabulary.json").json()
                        )
                        names = f"{len(vocab['events'])} events, {len(vocab['tags'])} tags"
                        rows.append(("vocabulary.json", f"{seconds * 1000:,.0f} ms", "", "", names))
                        shapes = {**bench.SHAPES, "scenario 5 (good customers)": GOOD}
                        for label, raw in shapes.items():

                            def http(raw: Any = raw) -> int:
                                answer = client.post(
                                    "/app/segments/count.json",
                                    json={"condition": raw},
                                    headers=headers,
                                )
                                answer.raise_for_status()
                                return answer.json()["count"]

                            over_http, found = timed(http)
                            direct, same = timed(
                                lambda raw=raw: conveyor.segments.count(workspace, raw=raw)
                            )
                            sql, also = timed(lambda raw=raw: bare_count(url, raw))
                            assert found == same == also, (label, found, same, also)
                            verdict = "met" if over_http < TARGET_S else "NOT met"
                            rows.append(
                                (
                                    f"count.json: {label}",
                                    f"{over_http * 1000:,.0f} ms ({verdict})",
                                    f"{direct * 1000:,.0f} ms",
                                    f"{sql * 1000:,.0f} ms",
                                    f"{found:,}",
                                )
                            )
                            log.print(f"{time.perf_counter() - started:6.0f}s {rows[-1]}")
            finally:
                conveyor.close()
    finally:
        if not args.keep:
            bench.drop("sqlite")
    loads.append(os.getloadavg())
    table = Table(
        title=f"Segment builder on SQLite: {args.contacts:,} contacts, {args.events:,} events "
        f"(target: a count < {TARGET_S:.0f} s, the segments benchmark's)",
        caption=f"nproc {os.cpu_count()} | Python {platform.python_version()} | SQLite "
        f"{sqlite3.sqlite_version} | load average before "
        + " / after ".join("/".join(f"{x:.2f}" for x in avg) for avg in loads),
    )
    columns = ("over HTTP", "service call", "segments benchmark's count_query", "contacts")
    for column in ("measurement", *columns):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=150, markup=False).print(table)


if __name__ == "__main__":
    main()
