"""Split tests and the deliverability guard: what one check costs.

Per dialect, in process (`bootstrap` with a SimulatedClock) on a throwaway database: an active
automation whose split node is a test (clicks, 3 days, min 500 per path), and N contacts who
took its paths — the split's step rows, one sent email each (outbox), and clicks for ~3 % / 4 %
of them (email.clicked events naming the run), plus complaints from 2 in 500 (both paths alike), written through
the driver's bulk path (not timed). Then, timed:

1. **Split-test check**: `Experiments.check` of the workspace — read every path step and metric
   event of the test, decide (mSPRT), store the decision. It runs every minute in the worker.
2. **Guard check**: `Deliverability.check` of the workspace — read the window's N sent emails and
   the complaints, judge the five providers, store them. Also every minute.
3. **decide()**: the pure decision alone, calls per second (two paths).

    .venv/bin/python benchmarks/experiments.py [--contacts 50000] [--dialect sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from common import database, dialects, log, machine, print_table

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.domain.experiments import ArmCounts, Rules, decide
from conveyor.settings import Settings
from conveyor.store import bulk
from conveyor.store.schema import contacts, events, outbox, runs, steps

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
AUTOMATION = {
    "key": "subject-test",
    "triggers": [{"event": "signed_up"}],
    "nodes": [
        {"id": "split", "type": "split",
         "test": {"metric": "clicked", "window": "3 days", "min_sample": 500,
                  "max_duration": "60 days"},
         "paths": [{"name": "A", "weight": 1, "next": "a"}, {"name": "B", "weight": 1, "next": "b"}]},
        {"id": "a", "type": "add_tag", "tag": "a", "next": "end"},
        {"id": "b", "type": "add_tag", "tag": "b", "next": "end"},
    ],
}  # fmt: skip
DOMAINS = ["gmail.com", "yahoo.com", "hotmail.com", "icloud.com", "acme.example"]


def load(conveyor: Any, ws: int, automation_id: int, n: int, rnd: random.Random) -> None:
    start = NOW - timedelta(days=2)
    with conveyor.store.db.engine.begin() as conn:
        for first in range(0, n, 10_000):
            people, run_rows, step_rows, mails, log_rows = [], [], [], [], []
            for i in range(first, min(first + 10_000, n)):
                at = start + timedelta(seconds=i)
                path = "A" if i % 2 else "B"
                email = f"u{i}@{DOMAINS[i % len(DOMAINS)]}"
                people.append({"id": i + 1, "workspace_id": ws, "email": email, "score": 0,
                               "fields": {}, "created_at": at, "updated_at": at})  # fmt: skip
                run_rows.append({
                    "id": i + 1, "workspace_id": ws, "automation_id": automation_id,
                    "version": 1, "contact_id": i + 1, "status": "finished", "node": None,
                    "state": {}, "wake_at": None, "steps": 2, "trigger": {},
                    "outcome": "completed", "entered_at": at, "finished_at": at,
                })  # fmt: skip
                step_rows.append({
                    "workspace_id": ws, "run_id": i + 1, "contact_id": i + 1,
                    "automation_id": automation_id, "version": 1, "node": "split",
                    "outcome": path, "reason": {"why": path}, "at": at,
                })  # fmt: skip
                mails.append({
                    "workspace_id": ws, "channel": "email", "template": "t", "contact_id": i + 1,
                    "run_id": i + 1, "automation_id": automation_id, "version": 1,
                    "node": path.lower(), "message_class": "marketing", "priority": 0,
                    "payload": {}, "idempotency_key": f"run:{i + 1}:step:1", "status": "sent",
                    "created_at": at, "recipient": email, "sent_at": at, "attempts": 1,
                })  # fmt: skip
                if rnd.random() < (0.03 if path == "A" else 0.04):
                    log_rows.append(_event(ws, i + 1, "email.clicked", at, {"run": i + 1}))
                if i % 500 < 2:  # both paths alike: no guardrail trips
                    log_rows.append(_event(ws, i + 1, "email.complained", at, {"run": i + 1}))
            bulk.insert(conn, contacts, people)
            bulk.insert(conn, runs, run_rows)
            bulk.insert(conn, steps, step_rows)
            bulk.insert(conn, outbox, mails)
            bulk.insert(conn, events, log_rows)


def _event(ws: int, contact: int, name: str, at: datetime, props: dict[str, Any]) -> dict[str, Any]:
    return {"workspace_id": ws, "contact_id": contact, "kind": "system", "name": name,
            "properties": {"automation": "subject-test", **props}, "context": {},
            "message_id": None, "timestamp": at + timedelta(hours=1),
            "received_at": at}  # fmt: skip


def run(dialect: str, n: int) -> dict[str, Any]:
    with database(dialect, "experiments") as (url, _env):
        clock = SimulatedClock(NOW)
        conveyor = bootstrap(Settings(database_url=url), clock=clock)
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        conveyor.automations.apply(workspace, AUTOMATION)
        conveyor.automations.set_status(workspace, "subject-test", "active")
        with conveyor.store.read() as tx:
            automation_id = tx.automations.by_key(workspace.id, "subject-test").id
        log.print(f"{dialect}: loading {n:,} contacts")
        load(conveyor, workspace.id, automation_id, n, random.Random(1))
        out: dict[str, Any] = {}
        started = time.perf_counter()
        conveyor.experiments.check(workspace)
        out["split_ms"] = (time.perf_counter() - started) * 1000
        [item] = conveyor.experiments.of_automation(workspace, "subject-test")
        out["split_status"] = f"{item['status']} {item['winner'] or ''}".strip()
        started = time.perf_counter()
        conveyor.deliverability.check(workspace)
        out["guard_ms"] = (time.perf_counter() - started) * 1000
        gmail = conveyor.deliverability.status(workspace)["providers"][0]
        out["guard_status"] = f"gmail {gmail['status']}"
        conveyor.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--dialect", default="both")
    args = parser.parse_args()
    started = machine()
    results = {d: run(d, args.contacts) for d in dialects(args.dialect)}
    arms = [ArmCounts("A", 5000, 150), ArmCounts("B", 5000, 190)]
    began, calls = time.perf_counter(), 20_000
    for _ in range(calls):
        decide(arms, Rules(), NOW, NOW)
    per_second = calls / (time.perf_counter() - began)
    for r in results.values():
        r["decide"] = per_second
    print_table(
        f"Split-test and guard checks, {args.contacts:,} contacts on the test / emails sent",
        [
            ("split-test check (ms)", "split_ms", "{:,.0f}"),
            ("its decision", "split_status"),
            ("guard check (ms)", "guard_ms", "{:,.0f}"),
            ("its verdict", "guard_status"),
            ("decide() calls/s (pure)", "decide"),
        ],
        results,
        started,
    )


if __name__ == "__main__":
    main()
