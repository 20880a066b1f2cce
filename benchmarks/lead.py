"""Lead benchmark (issue 10): what one lead costs the engine, from accepted event to tag committed.

The lead: a new user tracks `pricing_viewed`; the `lead` automation (trigger on that event, an
`if` on it, then `add_tag lead`) tags them. Per dialect, on a throwaway database:

1. SQL counted in process (`bootstrap` with a SimulatedClock): the real ASGI app over
   `httpx.ASGITransport` with a write key, then `worker.loop.engine_round` until it finds nothing to do, as the worker
   thread of `conveyor serve` does it. SQLAlchemy events on the app's engine count statements
   (`before_cursor_execute`: an executemany is one, each insertmanyvalues batch one; the
   `BEGIN IMMEDIATE` and advisory-lock statements sent with exec_driver_sql count too) and
   commits, from the moment the track call is made until the commit that writes the tag; then
   separately the rest of that worker round (the system events the lead caused, the empty round
   that ends it). On PostgreSQL, round trips the statement hook does not see are counted beside
   them: each connection checkout sends a pre-ping `SELECT 1` (`pool_pre_ping`), and psycopg
   sends each transaction's BEGIN itself (the pool's rollback on return is skipped by the
   driver when no transaction is open, so it costs nothing). Measured for a lone lead after a warm-up
   lead, for the first lead after start, for 50 leads in one `/v1/batch`, and for idle poll
   rounds (the engine loop and the delivery loop each poll every 0.5 s; the date sweep runs
   every 60 s, the segment sweep every 300 s). Every lead's tag is checked afterwards.
2. Trigger latency, with `conveyor serve` alone as a subprocess (real clock, fresh database,
   free port): `--rate` events/s of `pricing_viewed`, one new user each, in `/v1/batch` calls of
   `--batch`, for `--seconds`; p50/p99 from accepted (`events.received_at`) to the first node
   executed (`steps.at`), the backlog when sending stopped (`pricing_viewed` events past the
   engine's cursor, all rows of the log past it, runs due but not advanced) and how long the
   worker then took to catch up (at most `--wait` seconds; runs not started by then count with
   the time they waited). See `common.trigger_latency`, shared with benchmarks/engine.py.

    .venv/bin/python benchmarks/lead.py [--dialect sqlite|postgresql|both]
        [--rate 500] [--seconds 15] [--batch 10] [--wait 60] [--part count|latency|both]
        [--breakdown 30] [--trace]

`--breakdown N` also prints, per dialect, the lone lead's statements grouped by their first 60
characters (the N most frequent), `--trace` all of them in the order sent, with the commits. Worker memory against waiting runs is benchmarks/engine.py's.
Databases: a temp-dir SQLite file, or `conveyor_bench_{lead,latency}_<pid>` on 127.0.0.1:5432
(dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

import httpx
import yaml
from common import database, dialects, load_1min, log, machine, print_table, trigger_latency
from sqlalchemy import Engine, event, func, select

from conveyor.api.app import create_app
from conveyor.bootstrap import Conveyor, bootstrap
from conveyor.clock import SimulatedClock
from conveyor.settings import Settings
from conveyor.store.schema import contact_tags
from conveyor.worker.loop import engine_round

LEAD = yaml.safe_load("""
key: lead
triggers: [{event: pricing_viewed}]
entry: {repeat: every_time}
nodes:
  - {id: check, type: if, condition: {event: pricing_viewed}, then: tag, else: end}
  - {id: tag, type: add_tag, tag: lead}
""")
BATCH_LEADS = 50
WORKER_STEPS = ("engine.dispatch", "engine.execute")


class Mark(NamedTuple):
    """Counts so far."""

    statements: int
    commits: int
    writes: int  # commits of transactions that sent an INSERT, UPDATE or DELETE
    checkouts: int
    transactions: int


@dataclass
class Tally:
    """What one measured piece of work sent to the database, in order."""

    statements: list[tuple[str, str]] = field(default_factory=list)  # (phase, SQL)
    commits: list[str] = field(default_factory=list)  # the phase of each commit
    commit_after: list[int] = field(default_factory=list)  # statements sent before each commit
    writes: int = 0
    rollbacks: int = 0
    checkouts: int = 0
    transactions: int = 0
    tag_commits: list[Mark] = field(default_factory=list)  # at each commit that wrote tags

    def mark(self) -> Mark:
        return Mark(
            len(self.statements),
            len(self.commits),
            self.writes,
            self.checkouts,
            self.transactions,
        )

    def to_last_tag(self) -> Mark:
        if not self.tag_commits:
            raise SystemExit("no tag was committed")
        return self.tag_commits[-1]


class SQLCounter:
    """Counts what `engine` sends while `measure` runs; `phase` names who is sending."""

    def __init__(self, engine: Engine) -> None:
        self.tally: Tally | None = None
        self.phase = "request"
        self._tag_pending = self._wrote = False
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        event.listen(engine, "checkout", self._checkout)

    def measure(self, work: Callable[[], Any]) -> Tally:
        self.tally, self.phase, self._tag_pending = Tally(), "request", False
        try:
            work()
            return self.tally
        finally:
            self.tally = None

    def _statement(self, conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if self.tally is not None:
            self.tally.statements.append((self.phase, sql))
            self._tag_pending |= sql.startswith(("INSERT INTO contact_tags", "COPY contact_tags"))
            self._wrote |= sql.startswith(("INSERT", "UPDATE", "DELETE"))

    def _begin(self, conn: Any) -> None:
        self._wrote = False
        if self.tally is not None:
            self.tally.transactions += 1

    def _commit(self, conn: Any) -> None:
        if self.tally is not None:
            t = self.tally
            t.commits.append(self.phase)
            t.commit_after.append(len(t.statements))
            t.writes += self._wrote
            if self._tag_pending:
                t.tag_commits.append(t.mark())
                self._tag_pending = False

    def _rollback(self, conn: Any) -> None:
        if self.tally is not None:
            self.tally.rollbacks += 1
            self._tag_pending = False

    def _checkout(self, *args: Any) -> None:
        if self.tally is not None:
            self.tally.checkouts += 1


def name_phases(conveyor: Conveyor, counter: SQLCounter) -> None:
    """Label the statements each of the worker's steps sends (wraps them on this instance)."""
    for path in WORKER_STEPS:
        owner_name, method = path.split(".")
        owner = getattr(conveyor, owner_name)
        original = getattr(owner, method)

        def labelled(*args: Any, _path: str = path, _original: Any = original, **kw: Any) -> Any:
            counter.phase = _path
            try:
                return _original(*args, **kw)
            finally:
                counter.phase = "worker, other"

        setattr(owner, method, labelled)


def post(app: Any, key: str, path: str, body: dict[str, Any]) -> None:
    async def call() -> None:
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://conveyor.bench", headers=headers
        ) as client:
            response = await client.post(path, json=body)
            if response.status_code != 200:
                raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")

    asyncio.run(call())


def lead_call(user: str) -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "pricing_viewed", "messageId": user}


def pair(statements: int, commits: int) -> str:
    return f"{statements:,} / {commits:,}"


def count_bench(dialect: str) -> dict[str, Any]:
    load_before = load_1min()
    with database(dialect, "lead") as (url, _):
        clock = SimulatedClock()
        conveyor = bootstrap(Settings(database_url=url), clock=clock)
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        key = conveyor.workspaces.create_key(workspace, "write", "website").secret
        conveyor.automations.apply(workspace, LEAD)
        conveyor.automations.set_status(workspace, "lead", "active")
        app = create_app(conveyor)

        def worker() -> None:
            """What the worker's engine loop does until it finds nothing to do (then it sleeps)."""
            while engine_round(conveyor, sweep_dates=False, sweep_segments=False):
                pass

        counter = SQLCounter(conveyor.store.db.engine)
        name_phases(conveyor, counter)
        worker()  # a worker that has been up: setup's events consumed, dates swept
        conveyor.engine.sweep_dates()

        def lead(user: str) -> Callable[[], None]:
            def work() -> None:
                clock.advance(timedelta(seconds=1))
                post(app, key, "/v1/track", lead_call(user))
                counter.phase = "worker, other"
                worker()

            return work

        cold = counter.measure(lead("cold-1"))
        counter.measure(lead("warm-1"))
        lone = counter.measure(lead("lone-1"))
        idle_engine = counter.measure(worker)
        idle_delivery = counter.measure(conveyor.delivery.deliver)
        dates = counter.measure(conveyor.engine.sweep_dates)
        segment_sweep = counter.measure(conveyor.segments.sweep)

        def batch() -> None:
            clock.advance(timedelta(seconds=1))
            calls = [lead_call(f"batch-{i}") for i in range(BATCH_LEADS)]
            post(app, key, "/v1/batch", {"batch": calls})
            counter.phase = "worker, other"
            worker()

        many = counter.measure(batch)
        with conveyor.store.db.read_connection() as conn:
            tagged = conn.execute(
                select(func.count()).select_from(contact_tags).where(contact_tags.c.tag == "lead")
            ).scalar_one()
        conveyor.close()
    if tagged != 3 + BATCH_LEADS:
        raise SystemExit(f"{dialect}: {tagged} contacts tagged, expected {3 + BATCH_LEADS}")

    tag = lone.to_last_tag()
    statements, commits = tag.statements, tag.commits
    out: dict[str, Any] = {
        "lone_statements": statements,
        "lone_commits": commits,
        "lone_writes": tag.writes,
        "lone_rollbacks": lone.rollbacks,
        "lone_rest": pair(len(lone.statements) - statements, len(lone.commits) - commits),
        "cold": pair(*cold.to_last_tag()[:2]),
        "idle_engine": pair(len(idle_engine.statements), len(idle_engine.commits)),
        "idle_delivery": pair(len(idle_delivery.statements), len(idle_delivery.commits)),
        "sweeps": f"{len(dates.statements):,} / {len(segment_sweep.statements):,}",
        "idle_per_s": 2 * (len(idle_engine.statements) + len(idle_delivery.statements))
        + len(dates.statements) / 60
        + len(segment_sweep.statements) / 300,
        "breakdown": breakdown(lone.statements, statements),
        "trace": trace(lone, statements),
    }
    if dialect == "postgresql":  # what psycopg sends beside the statements SQLAlchemy sees
        out["lone_hidden"] = f"{tag.checkouts} + {tag.transactions}"
        out["lone_round_trips"] = statements + tag.checkouts + tag.transactions + commits
    for phase in ("request", *WORKER_STEPS):
        to_tag = sum(p == phase for p, _ in lone.statements[:statements])
        to_tag_commits = sum(p == phase for p in lone.commits[:commits])
        out[f"lone_{phase}"] = pair(to_tag, to_tag_commits)
    many_tag = many.to_last_tag()
    out |= {
        "load_count": f"{load_before} -> {load_1min()}",
        "batch_per_lead": many_tag.statements / BATCH_LEADS,
        "batch_commits": many_tag.commits,
        "batch_idle_per_lead": len(many.statements) / BATCH_LEADS,
        "batch_request": pair(
            sum(p == "request" for p, _ in many.statements), many.commits.count("request")
        ),
    }
    log.print(f"{dialect}: lone lead {statements} statements, {commits} commits", highlight=False)
    return out


def breakdown(statements: list[tuple[str, str]], to_tag: int) -> list[tuple[int, int, str, str]]:
    """The statements grouped by their first 60 characters: (to the tag's commit, after it,
    the phases that sent them, the text), most frequent first."""
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    phases: dict[str, set[str]] = {}
    for i, (phase, sql) in enumerate(statements):
        text = re.sub(r"\s+", " ", sql).strip()[:60]
        (before if i < to_tag else after)[text] += 1
        phases.setdefault(text, set()).add(phase.split(".")[-1])
    groups = [(before[t], after[t], ",".join(sorted(phases[t])), t) for t in phases]
    return sorted(groups, key=lambda g: (-(g[0] + g[1]), -g[0], g[3]))


def trace(tally: Tally, to_tag: int) -> list[str]:
    """The statements in the order sent, with their phase, and where each commit fell."""
    lines: list[str] = []
    commits = list(tally.commit_after)
    for i, (phase, sql) in enumerate([*tally.statements, ("", "")]):
        while commits and commits[0] == i:
            lines.append("       COMMIT" + ("  <- the tag's" if i == to_tag else ""))
            commits.pop(0)
        if sql:
            lines.append(f"  {i + 1:3}  {phase:21} {' '.join(sql.split())[:100]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to send them")
    parser.add_argument("--batch", type=int, default=10, help="events per /v1/batch call")
    parser.add_argument("--wait", type=float, default=60.0, help="max seconds to catch up")
    parser.add_argument("--part", choices=["count", "latency", "both"], default="both")
    parser.add_argument("--breakdown", type=int, default=0, metavar="N", help="top N SQL texts")
    parser.add_argument("--trace", action="store_true", help="the lone lead's SQL in order")
    args = parser.parse_args()
    facts_before = machine()
    results: dict[str, dict[str, Any]] = {d: {} for d in dialects(args.dialect)}
    for dialect in results:
        if args.part != "latency":
            results[dialect] |= count_bench(dialect)
        if args.part != "count":
            results[dialect] |= trigger_latency(
                dialect,
                LEAD,
                "pricing_viewed",
                rate=args.rate,
                seconds=args.seconds,
                batch=args.batch,
                wait=args.wait,
                purpose="latency",
            )
    for result in results.values():
        if "p99" in result and result["unfinished"]:
            for key in ("p50", "p99"):
                result[key] = f">= {result[key]:,.0f}"

    per_poll = f"<= {args.rate / 4:,.0f} (250 ms of events)"
    via = f"/v1/batch x {args.batch}" if args.batch > 1 else "/v1/track"
    rows = [  # label, result key, format, target
        ("lone lead, /v1/track -> tag committed: SQL statements", "lone_statements", "", "<= 20"),
        ("  commits", "lone_commits", "", "<= 3"),
        ("  statements / commits: the request (key lookup + ingest)", "lone_request"),
        ("  ... worker: segments.process_log", "lone_segments.process_log"),
        ("  ... worker: engine.dispatch (trigger, enroll)", "lone_engine.dispatch"),
        ("  ... worker: engine.execute (if, add_tag)", "lone_engine.execute"),
        ("  commits of transactions that wrote", "lone_writes"),
        ("  pool resets on return (ROLLBACK; a no-op with no transaction open)", "lone_rollbacks"),
        ("  PostgreSQL, not counted: pre-ping SELECT 1 + BEGIN", "lone_hidden"),
        ("  PostgreSQL round trips in all (statements, those, COMMITs)", "lone_round_trips"),
        ("lone lead, rest of the worker round until idle: statements / commits", "lone_rest"),
        ("first lead after start (cold caches) -> tag: statements / commits", "cold"),
        ("idle poll round, engine loop (every 0.5 s): statements / commits", "idle_engine"),
        ("idle poll round, delivery loop (every 0.5 s): statements / commits", "idle_delivery"),
        ("statements of the date sweep (60 s) / segment sweep (300 s)", "sweeps"),
        ("idle statements per second, all loops", "idle_per_s", "{:,.1f}"),
        (
            f"{BATCH_LEADS} leads in one /v1/batch -> last tag: statements per lead",
            "batch_per_lead",
            "{:,.1f}",
        ),
        ("  commits in all", "batch_commits"),
        ("  of which the request: statements / commits", "batch_request"),
        ("  statements per lead, until the worker is idle", "batch_idle_per_lead", "{:,.1f}"),
        ("load average (1 min) before -> after counting", "load_count"),
        (f"latency: events sent ({via}, {args.rate:,.0f}/s asked, {args.seconds:g} s)", "sent"),
        ("latency: events/s achieved", "calls_per_s", "", f"{args.rate:,.0f}"),
        ("latency: accepted -> first node executed, p50 ms", "p50"),
        ("latency: accepted -> first node executed, p99 ms", "p99", "", "< 250"),
        (
            "backlog when sending stopped: events past the engine's cursor",
            "backlog_events",
            "",
            per_poll,
        ),
        ("  all rows of the log past it (system events too)", "backlog_log"),
        ("backlog when sending stopped: runs due, not advanced", "backlog_runs", "", per_poll),
        ("seconds after the last event until every run started", "catch_up", "{:,.1f}"),
        (f"runs started within {args.wait:g} s of the last event", "runs"),
        ("load average (1 min) before -> after sending", "load_latency"),
    ]
    for result in results.values():
        if "sent" in result and result["catch_up"] is None:
            result["catch_up"] = f"> {args.wait:g}"
    title = "Conveyor lead benchmark (issue 10): /v1/track -> trigger -> if -> add_tag"
    print_table(title, rows, results, facts_before)
    for dialect, result in results.items():
        if args.breakdown and "breakdown" in result:
            print(f"\n{dialect}: the lone lead's statements by their first 60 characters")
            print("   to tag  after  phases          SQL")
            for before, after, phases, text in result["breakdown"][: args.breakdown]:
                print(f"   {before:6}  {after:5}  {phases:15} {text}")
        if args.trace and "trace" in result:
            print(f"\n{dialect}: the lone lead's statements in order, until the worker is idle")
            print("\n".join(result["trace"]))


if __name__ == "__main__":
    main()
