"""The ingest writer alone: CPU per event and statements per group, which the machine's load
does not change (the HTTP benchmark, `ingest.py`, measures the whole server's rate).

In process, on a throwaway database: the benchmark's workload (`ingest.workload`, the same seeded
100-call batches) is parsed as the API parses it, then handed to `Ingest._apply_group` in groups
of `--group` requests — what the group writer does with the requests waiting — after a warm-up
of the same size (then, on PostgreSQL, VACUUM ANALYZE as in `ingest.py`). Printed per dialect: groups, calls, wall and process CPU seconds, CPU µs per
call, and per group the statements sent (SQLAlchemy's `before_cursor_execute`, which the driver
paths announce too; pipelined statements count one each) and the round trips to PostgreSQL
(a pipeline is one, a COPY two, the COMMIT one; the BEGIN psycopg sends itself and the pool's pre-ping are counted beside).

    .venv/bin/python benchmarks/ingest_writer.py [--calls N] [--group 4] [--dialect both]
        [--profile FILE]   (cProfile of the timed part, in FILE.<dialect>)
"""

from __future__ import annotations

import argparse
import cProfile
import time
from typing import Any

import orjson
from common import database, dialects, load_average
from ingest import analyze, workload
from sqlalchemy import event

from conveyor.bootstrap import bootstrap
from conveyor.settings import Settings


class Counter:
    """Statements and round trips on one engine."""

    def __init__(self, engine: Any) -> None:
        self.statements = self.round_trips = 0
        self._in_pipeline = False
        self.trace = False
        event.listen(engine, "before_cursor_execute", self._statement)
        event.listen(engine, "begin", self._begin)
        event.listen(engine, "checkout", self._checkout)
        event.listen(engine, "commit", self._commit)
        self.postgresql = engine.dialect.name == "postgresql"

    def _statement(self, conn: Any, cursor: Any, sql: str, *_args: Any) -> None:
        self.statements += 1
        if self.trace:
            print(sql[:110].replace("\n", " "))
        raw = conn.connection.dbapi_connection
        # In psycopg's pipeline mode the statements of one pipeline share a round trip.
        pipeline = getattr(raw, "_pipeline", None)
        if pipeline is not None:
            if not self._in_pipeline:
                self.round_trips += 1
            self._in_pipeline = True
            return
        self._in_pipeline = False
        # COPY … FROM STDIN waits twice: for the server to take the copy, then for its end.
        self.round_trips += 2 if sql.startswith("COPY") else 1

    def _begin(self, _conn: Any) -> None:
        self._in_pipeline = False
        if self.postgresql:
            self.round_trips += 1  # psycopg sends BEGIN itself

    def _commit(self, _conn: Any) -> None:
        self.round_trips += 1

    def _checkout(self, *_args: Any) -> None:
        if self.postgresql:
            self.round_trips += 1  # pool_pre_ping


def bench(dialect: str, args: argparse.Namespace) -> dict[str, Any]:
    bodies = workload(args.calls + args.warmup, args.batch, args.users, args.seed, "w")
    with database(dialect, "ingest_writer") as (url, _env):
        conveyor = bootstrap(Settings(database_url=url))
        conveyor.upgrade_schema()
        workspace, _ = conveyor.workspaces.create("bench")
        ingest = conveyor.ingest
        requests = [
            ingest.parse(workspace, orjson.loads(body)["batch"]) for body in bodies
        ]  # as the API does on its event loop (not timed here)
        groups = [requests[i : i + args.group] for i in range(0, len(requests), args.group)]
        warm = args.warmup // args.batch // args.group
        for group in groups[:warm]:
            ingest._apply_group(group)
        if dialect == "postgresql" and not args.no_analyze:
            analyze(url)
        counter = Counter(conveyor.store.db.engine)
        profile = cProfile.Profile() if args.profile else None
        timed = groups[warm:]
        wall, cpu = time.perf_counter(), time.process_time()
        if profile:
            profile.enable()
        for n, group in enumerate(timed):
            counter.trace = args.trace and n == len(timed) - 1
            results = ingest._apply_group(group)
            assert all(not r.errors for r in results), results
        if profile:
            profile.disable()
            profile.dump_stats(f"{args.profile}.{dialect}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        calls = sum(len(r.parsed) for g in timed for r in g)
        # Every identify call's event sits on the contact with its email (ids kept in order).
        with conveyor.store.db.engine.connect() as conn:
            email = "properties->>'email'" if dialect == "postgresql" else "properties->>'$.email'"
            wrong = conn.exec_driver_sql(
                f"SELECT count(*) FROM events e JOIN contacts c ON c.id = e.contact_id "
                f"WHERE e.name = 'identify' AND c.email <> e.{email}"
            ).scalar_one()
        assert wrong == 0, f"{wrong} identify events on a contact with another email"
        conveyor.close()
    return {
        "dialect": dialect,
        "groups": len(timed),
        "calls": calls,
        "wall": wall,
        "cpu": cpu,
        "statements": counter.statements / len(timed),
        "round_trips": counter.round_trips / len(timed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000, help="calls applied (timed)")
    parser.add_argument("--warmup", type=int, default=2_000, help="calls applied first")
    parser.add_argument("--batch", type=int, default=100, help="calls per request")
    parser.add_argument("--group", type=int, default=4, help="requests per group transaction")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--dialect", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the timed part")
    parser.add_argument("--no-analyze", action="store_true", help="PostgreSQL: no ANALYZE")
    parser.add_argument("--trace", action="store_true", help="print the last group's statements")
    args = parser.parse_args()
    print(f"load at start: {load_average()}")
    for dialect in dialects(args.dialect):
        r = bench(dialect, args)
        print(
            f"{r['dialect']}: {r['groups']} groups of {args.group}×{args.batch} calls, "
            f"{r['calls']:,} calls; wall {r['wall']:.2f}s ({r['calls'] / r['wall']:,.0f} calls/s); "
            f"CPU {r['cpu']:.2f}s = {r['cpu'] / r['calls'] * 1e6:.1f} µs/call; per group "
            f"{r['statements']:.1f} statements, {r['round_trips']:.1f} round trips"
        )
    print(f"load at end: {load_average()}")


if __name__ == "__main__":
    main()
