"""Lead scoring benchmark: a full recompute of N contacts from the log, and events/s through the
scoring consumer — each beside its ceiling on this machine.

Per dialect, in process (`bootstrap` with a SimulatedClock) on a throwaway database: N contacts
(~20 % with country DE, some with a job title and company size) and ~3 events each over the last
90 days (email.clicked, page views, ~a third of them /pricing), written through the driver's
bulk path (not timed). Then, timed:

1. **Recompute**: `Scoring.apply` of examples/scoring/lead-scoring.yaml (engagement: clicks +5
   capped at 20 per 30 days, pricing visits +10, half-life 30 days; fit: three field rules),
   which rescores every contact from the log, a page of 1,000 contacts per transaction.
2. **Consumer**: L more events (one per contact of the first L, all scored, timestamped now)
   appended; then the scoring consumer alone (a LogConsumer with only the scoring handler)
   until caught up, with an active automation watching engagement 50 (so every touched score
   also gets its next crossing computed). Events/s = L / seconds.

Ceilings, same database, same rows, rolled back: the recompute's reads and writes without the
scoring logic (read every page's events, insert a state per contact and an award per scored
event), and the consumer's (read the log in batches of 1,000, write an award, a score.changed
event and a state per event). The gap to the ceiling is the Python scoring logic.

    .venv/bin/python benchmarks/scoring.py [--contacts 100000] [--live 20000]
        [--dialect sqlite|postgresql|both]
"""

from __future__ import annotations

import argparse
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from common import database, dialects, log, machine, print_table, rss_mb

from conveyor.bootstrap import bootstrap
from conveyor.clock import SimulatedClock
from conveyor.services.log import LogConsumer
from conveyor.services.scoring import LOG_CONSUMER
from conveyor.settings import Settings
from conveyor.store import bulk
from conveyor.store.schema import contact_scores, contacts, events, score_awards

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MODEL = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "examples/scoring/lead-scoring.yaml").read_text()
)
WATCH = {
    "key": "hot",
    "triggers": [{"score_crossed": {"score": "engagement", "threshold": 50}}],
    "nodes": [{"id": "tag", "type": "add_tag", "tag": "hot"}],
}
PAGES = ["https://shop.example/pricing", "https://shop.example/blog/a", "https://shop.example/"]


def load(conveyor: Any, ws: int, n: int, rnd: random.Random) -> int:
    """N contacts and their history, through the driver's bulk path; how many events."""
    total = 0
    with conveyor.store.db.engine.begin() as conn:
        for start in range(0, n, 10_000):
            people, log_rows = [], []
            for i in range(start, min(start + 10_000, n)):
                fields: dict[str, Any] = {}
                if rnd.random() < 0.2:
                    fields["country"] = "DE"
                elif rnd.random() < 0.5:
                    fields["country"] = "US"
                if rnd.random() < 0.3:
                    fields["job_title"] = rnd.choice(["Head of Ops", "Engineer", "CEO"])
                if rnd.random() < 0.3:
                    fields["company_size"] = rnd.choice([5, 50, 500])
                people.append(
                    {
                        "id": i + 1,
                        "workspace_id": ws,
                        "external_id": f"u{i}",
                        "score": 0,
                        "fields": fields,
                        "created_at": NOW - timedelta(days=100),
                        "updated_at": NOW - timedelta(days=100),
                    }
                )
                for _ in range(rnd.choice([0, 1, 2, 3, 4, 5, 6])):
                    at = NOW - timedelta(seconds=rnd.randint(0, 90 * 86400))
                    if rnd.random() < 0.5:
                        name, props = "email.clicked", {"url": "https://shop.example/x"}
                    else:
                        name, props = "page", {"url": rnd.choice(PAGES)}
                    log_rows.append(event_row(ws, i + 1, name, props, at))
            log_rows.sort(key=lambda r: r["timestamp"])
            bulk.insert(conn, contacts, people)
            bulk.insert(conn, events, log_rows)
            total += len(log_rows)
    return total


def event_row(ws: int, cid: int, name: str, props: dict[str, Any], at: datetime) -> dict:
    return {
        "workspace_id": ws,
        "contact_id": cid,
        "kind": "track" if name != "page" else "page",
        "name": name,
        "properties": props,
        "context": {},
        "message_id": None,
        "timestamp": at,
        "received_at": at,
    }


class RolledBack(Exception):
    """Raised to leave a measured transaction without committing it."""


def ceiling_recompute(conveyor: Any, ws: int, names: set[str]) -> float:
    """Seconds for the recompute's reads and writes alone (rolled back)."""
    started = time.perf_counter()
    try:
        with conveyor.store.write() as tx:
            _recompute_io(tx, ws, names)
            raise RolledBack
    except RolledBack:
        pass
    return time.perf_counter() - started


def _recompute_io(tx: Any, ws: int, names: set[str]) -> None:
    after = 0
    while True:
        ids = tx.scoring.contact_ids(ws, after, 1000)
        if not ids:
            break
        after = ids[-1]
        rows = tx.scoring.events_of(ws, ids, names, 10**18)
        tx.scoring.add_states([state(ws, cid, s) for cid in ids for s in ("engagement", "fit")])
        tx.scoring.add_awards([award(ws, r) for r in rows])


def ceiling_consumer(conveyor: Any, ws: int, position: int) -> float:
    """Seconds for the consumer's reads and writes alone over the log past `position`."""
    started = time.perf_counter()
    try:
        with conveyor.store.write() as tx:
            _consumer_io(tx, ws, position)
            raise RolledBack
    except RolledBack:
        pass
    return time.perf_counter() - started


def _consumer_io(tx: Any, ws: int, position: int) -> None:
    last = tx.events.latest_id()  # not the score.changed rows this pass writes itself
    while True:
        batch = tx.events.after(position, last, 1000)
        if not batch:
            break
        position = batch[-1].id
        tx.scoring.add_awards([award(ws, r) for r in batch])
        tx.events.append(
            [
                event_row(
                    ws, r.contact_id, "score.changed", {"score": "x", "old": 1, "new": 2}, NOW
                )
                for r in batch
            ]
        )
        tx.scoring.save_states(
            [state(ws, cid, "engagement") for cid in {r.contact_id for r in batch}]
        )


def state(ws: int, cid: int, score: str) -> dict[str, Any]:
    return {
        "contact_id": cid,
        "score": score,
        "workspace_id": ws,
        "norm": 1.0,
        "fixed": 0.0,
        "checked_at": NOW,
        "cross_at": None,
    }


def award(ws: int, row: Any) -> dict[str, Any]:
    return {
        "contact_id": row.contact_id,
        "workspace_id": ws,
        "score": "engagement",
        "rule": "x",
        "event_id": row.id,
        "at": row.timestamp,
        "points": 5.0,
    }


def count(conveyor: Any, table: Any) -> int:
    from sqlalchemy import func, select

    with conveyor.store.db.read_connection() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def bench(dialect: str, n: int, live: int) -> dict[str, Any]:
    out: dict[str, Any] = {"contacts": n}
    with database(dialect, "scoring") as (url, _):
        clock = SimulatedClock(NOW)
        conveyor = bootstrap(Settings(database_url=url), clock=clock)
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        for key, kind in (("country", "text"), ("job_title", "text"), ("company_size", "number")):
            conveyor.catalog.declare_field(workspace, key, kind, None, None)
        started = time.perf_counter()
        out["events"] = load(conveyor, workspace.id, n, random.Random(20261201))
        log.print(
            f"{dialect}: loaded {n:,} contacts, {out['events']:,} events in "
            f"{time.perf_counter() - started:.0f}s",
            highlight=False,
        )
        if dialect == "postgresql":
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")

        out["ceiling_recompute_s"] = ceiling_recompute(
            conveyor, workspace.id, {"email.clicked", "page"}
        )
        started = time.perf_counter()
        result = conveyor.scoring.apply(workspace, MODEL)
        out["recompute_s"] = time.perf_counter() - started
        out["scored"] = result["contacts"]
        out["awards"] = count(conveyor, score_awards)
        out["states"] = count(conveyor, contact_scores)
        out["recompute_cps"] = n / out["recompute_s"]
        out["recompute_eps"] = out["events"] / out["recompute_s"]
        out["ceiling_recompute_cps"] = n / out["ceiling_recompute_s"]
        log.print(
            f"{dialect}: recompute {out['recompute_s']:.1f}s "
            f"(ceiling {out['ceiling_recompute_s']:.1f}s)",
            highlight=False,
        )

        conveyor.automations.apply(workspace, WATCH)  # the consumer then computes crossings
        conveyor.automations.set_status(workspace, "hot", "active")
        # live events: one per contact of the first `live`, all scored, timestamped now
        clock.advance(timedelta(minutes=1))
        rnd = random.Random(7)
        rows = []
        for i in range(live):
            if i % 2:
                rows.append(event_row(workspace.id, i % n + 1, "email.clicked", {}, clock.now()))
            else:
                rows.append(
                    event_row(
                        workspace.id,
                        i % n + 1,
                        "page",
                        {"url": rnd.choice(PAGES[:1] * 2 + PAGES[1:])},
                        clock.now(),
                    )
                )
        with conveyor.store.write() as tx:
            position = tx.events.position(LOG_CONSUMER)
        with conveyor.store.db.engine.begin() as conn:
            bulk.insert(conn, events, rows)
        if dialect == "postgresql":
            with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE")
        out["ceiling_consumer_s"] = ceiling_consumer(conveyor, workspace.id, position)
        consumer = LogConsumer(conveyor.store, clock, [(LOG_CONSUMER, conveyor.scoring.on_events)])
        before = count(conveyor, score_awards)
        started = time.perf_counter()
        while consumer.process(1000):
            pass
        out["consumer_s"] = time.perf_counter() - started
        out["live_awards"] = count(conveyor, score_awards) - before
        out["live"] = live
        out["consumer_eps"] = live / out["consumer_s"]
        out["ceiling_consumer_eps"] = live / out["ceiling_consumer_s"]
        out["rss"] = rss_mb()
        log.print(
            f"{dialect}: consumer {out['consumer_s']:.1f}s "
            f"(ceiling {out['ceiling_consumer_s']:.1f}s)",
            highlight=False,
        )
        conveyor.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--live", type=int, default=20_000, help="events for the consumer")
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    facts_before = machine()
    results = {d: bench(d, args.contacts, args.live) for d in dialects(args.dialect)}
    for r in results.values():
        r["recompute_vs"] = f"{r['recompute_cps']:,.0f} / {r['ceiling_recompute_cps']:,.0f}"
        r["consumer_vs"] = f"{r['consumer_eps']:,.0f} / {r['ceiling_consumer_eps']:,.0f}"
    rows = [
        ("contacts / events in the log", "contacts"),
        ("  events in the log (email.clicked, page)", "events"),
        ("full recompute: seconds", "recompute_s", "{:,.1f}"),
        ("full recompute: contacts/s / ceiling (same I/O, no logic)", "recompute_vs"),
        ("full recompute: events/s", "recompute_eps"),
        ("  contacts with a score / states / awards", "scored"),
        ("  score rows (contact x score)", "states"),
        ("  award rows", "awards"),
        ("consumer: live events scored", "live"),
        ("consumer: seconds until caught up", "consumer_s", "{:,.2f}"),
        ("consumer: events/s / ceiling (same I/O, no logic)", "consumer_vs"),
        ("  awards written (clicks over their cap give none)", "live_awards"),
        ("process RSS MB at the end", "rss"),
    ]
    print_table(
        f"Conveyor scoring benchmark, {args.contacts:,} contacts", rows, results, facts_before
    )


if __name__ == "__main__":
    main()
