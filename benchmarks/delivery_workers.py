"""Delivery scale-out: emails/s with 1 and 2 `conveyor worker --role delivery` processes on one
PostgreSQL (issue 20: workers must send about N times as much).

Per worker count, on a fresh database: N contacts, an email template and an automation whose
one node sends it, run by the engine in this process until the outbox holds N due emails
(untimed). Then K delivery workers start at once; the time runs from the first 1 % sent (so
process start-up is not counted) until the outbox says every email is sent. The SMTP peer is aiosmtpd's discarding sink in a process of
its own. SQLite has one writer at a time, so only PostgreSQL is measured.

    .venv/bin/python benchmarks/delivery_workers.py [--messages 3000] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Any

from common import BIN, database, free_port, log, machine, print_table
from sqlalchemy import func, select

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store.schema import outbox

AUTOMATION = {
    "key": "mailer",
    "triggers": [{"event": "mail_me"}],
    "nodes": [{"id": "mail", "type": "send_email", "template": "note"}],
}
TEMPLATE = {
    "subject": "Hello {{ contact.first_name }}",
    "html": "<p>Hi {{ contact.first_name }}, <a href='https://shop.example/a'>see this</a>.</p>",
}


def sent(conveyor: Any) -> int:
    with conveyor.store.db.read_connection() as conn:
        where = outbox.c.status == "sent"
        return conn.execute(select(func.count()).select_from(outbox).where(where)).scalar_one()


def run(messages: int, workers: int, smtp_url: str) -> dict[str, Any]:
    with database("postgresql", f"dw{workers}") as (url, env):
        conveyor = bootstrap(Settings(database_url=url), clock=SimulatedClock())
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        conveyor.templates.save(workspace, "note", "email", TEMPLATE)
        conveyor.automations.apply(workspace, AUTOMATION)
        conveyor.automations.set_status(workspace, "mailer", "active")
        for start in range(0, messages, 1000):
            people = range(start, min(start + 1000, messages))
            calls = [{"type": "identify", "userId": f"u{i}",
                      "traits": {"email": f"u{i}@example.com", "firstName": f"N{i}"}}
                     for i in people]  # fmt: skip
            calls += [{"type": "track", "userId": f"u{i}", "event": "mail_me"} for i in people]
            conveyor.ingest.calls(workspace, calls)
        conveyor.engine.run_until_idle(max_rounds=10**6)
        with conveyor.store.db.read_connection() as conn:
            queued = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        assert queued == messages, queued
        worker_env = {**os.environ, **env, "CONVEYOR_SMTP_URL": smtp_url,
                      "CONVEYOR_EMAIL_FROM": "Shop <news@shop.example>"}  # fmt: skip
        procs = [
            subprocess.Popen([f"{BIN}/conveyor", "worker", "--role", "delivery"],
                             env=worker_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for _ in range(workers)
        ]  # fmt: skip
        try:
            # Timed from the first 1 % sent (the processes have started up) to the last.
            first = max(1, messages // 100)
            deadline = time.monotonic() + 600
            while sent(conveyor) < first and time.monotonic() < deadline:
                time.sleep(0.02)
            started, counted = time.perf_counter(), sent(conveyor)
            while sent(conveyor) < messages and time.monotonic() < deadline:
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
        done = sent(conveyor)
        conveyor.close()
    if done != messages:
        raise SystemExit(f"{workers} workers sent {done} of {messages}")
    rate = (messages - counted) / seconds
    log.print(f"{workers} workers: {rate:,.0f} emails/s", highlight=False)
    return {"seconds": seconds, "per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    started = machine()
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
         "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    try:
        smtp_url = f"smtp://127.0.0.1:{port}?security=none&max_connections=4"
        counts = [int(n) for n in args.workers.split(",")]
        results = {n: run(args.messages, n, smtp_url) for n in counts}
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    base = results[counts[0]]["per_s"]
    rows: list[tuple[Any, ...]] = []
    table: dict[str, dict[str, Any]] = {"postgresql": {}}
    for n in counts:
        table["postgresql"][f"w{n}"] = results[n]["per_s"]
        table["postgresql"][f"x{n}"] = f"{results[n]['per_s'] / base:.2f}x"
        rows.append((f"emails/s, {n} delivery worker{'s' if n > 1 else ''}", f"w{n}"))
        rows.append((f"  vs {counts[0]} worker", f"x{n}"))
    print_table(f"Delivery workers, {args.messages:,} emails each", rows, table, started)


if __name__ == "__main__":
    main()
