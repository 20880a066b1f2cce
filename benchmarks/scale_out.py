"""Scale-out benchmark: 1, 2 and 4 `conveyor worker` processes against one PostgreSQL.

For each worker count, on a fresh database: N contacts are seeded (untimed) with a tracked
`go` event each, and an active automation walks them through add_tag, send_email (to an aiosmtpd
sink in this process) and add_tag. Then the workers start — real `conveyor worker` subprocesses,
the command an operator runs — and the backlog is drained. Reported per worker count:

- contact-steps/s: the engine's steps / (its last step's time - its first), from the `steps`
  table (delivery's outcome steps left out: they are the emails);
- emails/s: messages sent / (last `sent_at` - first `sent_at`), from the outbox;
- wall: from starting the workers until every run finished and every email was received
  (worker start-up, ~1-2 s of imports, included);
- exactly once: every run finished with the same number of steps and no node twice, one outbox
  row per contact, and the sink received each Message-ID once.

    .venv/bin/python benchmarks/scale_out.py [--contacts 4000] [--workers 1,2,4]

Databases: `conveyor_bench_scaleout_<pid>` on 127.0.0.1:5432, dropped after each count.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import datetime
from typing import Any

from aiosmtpd.controller import Controller
from common import SRC, database, log, machine
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select, text

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings
from conveyor.store.schema import outbox, runs, steps

AUTOMATION = {
    "key": "scale",
    "triggers": [{"event": "go"}],
    "nodes": [
        {"id": "hello", "type": "add_tag", "tag": "started"},
        {"id": "mail", "type": "send_email", "template": "scale-mail"},
        {"id": "bye", "type": "add_tag", "tag": "mailed"},
    ],
}


DELIVERY_OUTCOMES = ("sent", "failed", "dead", "retrying", "skipped", "deferred")


class Sink:
    """Counts what arrives over SMTP, by Message-ID."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for line in envelope.content.split(b"\r\n"):
            if line.lower().startswith(b"message-id:"):
                with self.lock:
                    key = line.split(b":", 1)[1].strip().decode()
                    self.ids[key] = self.ids.get(key, 0) + 1
                break
        return "250 OK"

    @property
    def received(self) -> int:
        with self.lock:
            return sum(self.ids.values())


def seed(url: str, contacts: int, smtp_url: str) -> None:
    app = bootstrap(Settings(database_url=url, webhook_allow="127.0.0.1/32"))
    app.upgrade_schema()
    workspace, _ = app.workspaces.create("bench")
    app.channels.configure(workspace, "email", {"from": "Bench <b@bench.example>",
                                                 "smtp_url": smtp_url})
    app.templates.save(workspace, "scale-mail", "email",
                       {"subject": "Hi {{ contact.first_name }}", "text": "Hello {{ contact.email }}"})
    app.automations.apply(workspace, AUTOMATION)
    app.automations.set_status(workspace, "scale", "active")
    for start in range(0, contacts, 500):
        calls: list[dict[str, Any]] = []
        for i in range(start, min(start + 500, contacts)):
            calls.append({"type": "identify", "userId": f"u{i}",
                          "traits": {"email": f"p{i}@example.com", "firstName": f"P{i}"}})
            calls.append({"type": "track", "userId": f"u{i}", "event": "go"})
        assert app.ingest.calls(workspace, calls).accepted == len(calls)
    with app.store.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    app.close()


def measure(url: str, workers: int, contacts: int, sink: Sink, env: dict[str, str]) -> dict[str, Any]:
    app = bootstrap(Settings(database_url=url))
    engine = app.store.db.engine
    procs = []
    started = time.monotonic()
    for _ in range(workers):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli.main", "worker"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    try:
        while True:
            with engine.connect() as conn:
                finished = conn.execute(select(func.count()).select_from(runs).where(
                    runs.c.status == "finished")).scalar_one()
            if finished >= contacts and sink.received >= contacts:
                break
            if time.monotonic() - started > 900:
                raise RuntimeError(f"not done after 900 s: {finished} runs, {sink.received} emails")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a worker died: " + "".join(p.stderr.read() for p in procs if p.poll() is not None))
            time.sleep(0.2)
        wall = time.monotonic() - started
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)
    with engine.connect() as conn:
        # The engine's steps (delivery records its outcomes as steps too: those are the emails).
        n_steps, first, last = conn.execute(
            select(func.count(), func.min(steps.c.at), func.max(steps.c.at))
            .where(steps.c.outcome.not_in(DELIVERY_OUTCOMES))).one()
        sent, first_sent, last_sent = conn.execute(
            select(func.count(), func.min(outbox.c.sent_at), func.max(outbox.c.sent_at))
            .where(outbox.c.status == "sent")).one()
        rows = conn.execute(select(func.count()).select_from(outbox)).scalar_one()
        per_run = conn.execute(text("SELECT count(*) FROM runs")).scalar_one()
        twice = conn.execute(text(
            "SELECT count(*) FROM (SELECT run_id, node, outcome FROM steps WHERE run_id IS NOT NULL "
            "GROUP BY run_id, node, outcome HAVING count(*) > 1) t")).scalar_one()
        shapes = conn.execute(text(
            "SELECT count(DISTINCT n) FROM (SELECT count(*) n FROM steps GROUP BY run_id) t")).scalar_one()
    app.close()
    span = (last - first).total_seconds() if isinstance(first, datetime) else float("nan")
    sent_span = (last_sent - first_sent).total_seconds() if isinstance(first_sent, datetime) else float("nan")
    once = (per_run == contacts and rows == contacts and sent == contacts and twice == 0
            and shapes == 1 and len(sink.ids) == contacts and max(sink.ids.values()) == 1)
    return {
        "workers": workers, "steps": n_steps, "steps_s": n_steps / span if span else float("nan"),
        "emails_s": sent / sent_span if sent_span else float("nan"), "wall": wall,
        "once": "yes" if once else f"NO (runs {per_run}, outbox {rows}, sent {sent}, "
                                   f"dup steps {twice}, received {sink.received})",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=4000)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated worker counts")
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    started = machine()
    results = []
    for workers in counts:
        sink = Sink()
        with socket_port() as port:
            controller = Controller(sink, hostname="127.0.0.1", port=port)
        controller.start()
        smtp_url = f"smtp://127.0.0.1:{port}?security=none&max_connections=8"
        try:
            with database("postgresql", "scaleout") as (url, extra):
                log.print(f"{workers} worker(s): seeding {args.contacts:,} contacts")
                seed(url, args.contacts, smtp_url)
                env = {**os.environ, **extra, "PYTHONPATH": SRC, "CONVEYOR_WEBHOOK_ALLOW": "127.0.0.1/32",
                       "CONVEYOR_LOG_FORMAT": "text"}
                results.append(measure(url, workers, args.contacts, sink, env))
                log.print(results[-1])
        finally:
            controller.stop()
    table = Table(title=f"conveyor worker processes on one PostgreSQL, {args.contacts:,} contacts "
                        "x (add_tag, send_email, add_tag)")
    for header in ("workers", "contact-steps/s", "emails/s", "wall s", "steps", "exactly once"):
        table.add_column(header, justify="right")
    for r in results:
        table.add_row(str(r["workers"]), f"{r['steps_s']:,.0f}", f"{r['emails_s']:,.0f}",
                      f"{r['wall']:.1f}", f"{r['steps']:,}", r["once"])
    Console(width=140).print(table)
    print(f"at the start: {started}\nat the end:   {machine()}")


class socket_port:
    """A free loopback port (closed again before the SMTP sink binds it)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


if __name__ == "__main__":
    main()
