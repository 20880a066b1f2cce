"""Operations: is this deployment ready (`/readyz`), worker heartbeats, and the Prometheus
gauges read from the database at scrape time.

A readiness check is a handful of cheap reads; any failure of one (the database gone, a driver
error) makes that part not ready and is reported with its reason, never raised.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from conveyor.clock import Clock
from conveyor.settings import Settings
from conveyor.store import backup as sqlite_backup
from conveyor.store.backup import BackupSummary
from conveyor.store.store import Store

log = logging.getLogger("conveyor.ops")
# Heartbeat rows of workers gone this long are removed (a SIGKILLed worker leaves its row).
FORGET_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    checks: list[Check]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "not ready",
            "checks": {c.name: {"ok": c.ok, **c.detail} for c in self.checks},
        }


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Operations:
    def __init__(
        self, store: Store, clock: Clock, settings: Settings, *, consumers: Sequence[str] = ()
    ) -> None:
        """`consumers`: the event log's consumers; one that has not started lags by the log."""
        self.store = store
        self.clock = clock
        self.settings = settings
        self.consumers = list(consumers)

    # --- readiness -----------------------------------------------------------------------------

    def readiness(self) -> Readiness:
        now = self.clock.now()
        database = self._check("database", self._database)
        if not database.ok:  # the others would only repeat its error
            return Readiness([database])
        return Readiness(
            [
                database,
                self._check("schema", self._schema),
                self._check("workers", lambda: self._workers(now)),
                self._check("event_log", self._event_log),
                self._check("due_runs", lambda: self._due_runs(now)),
            ]
        )

    def _check(self, name: str, probe: Callable[[], Check]) -> Check:
        try:
            return probe()
        except Exception as exc:  # any failure is "not ready", with the reason
            log.warning("readiness check %s failed: %s", name, type(exc).__name__)
            return Check(name, False, {"error": _brief(exc)})

    def _database(self) -> Check:
        with self.store.peek() as tx:
            tx.ops.ping()
        return Check("database", True, {"dialect": self.store.dialect})

    def _schema(self) -> Check:
        with self.store.peek() as tx:
            current, head = tx.ops.schema_revision()
        return Check("schema", current == head, {"revision": current, "head": head})

    def _workers(self, now: datetime) -> Check:
        with self.store.peek() as tx:
            beats = tx.ops.heartbeats()
        limit = timedelta(seconds=self.settings.ready_heartbeat_seconds)
        fresh = [b for b in beats if now - b.beat_at <= limit]
        newest = max((b.beat_at for b in beats), default=None)
        detail: dict[str, Any] = {
            "fresh": len(fresh),
            "stale": len(beats) - len(fresh),
            "last_beat_seconds_ago": round((now - newest).total_seconds(), 1) if newest else None,
        }
        if not self.settings.ready_require_workers:
            detail["required"] = False
            return Check("workers", True, detail)
        return Check("workers", bool(fresh), detail)

    def _event_log(self) -> Check:
        with self.store.peek() as tx:
            position = tx.ops.log_position()
        lag = log_lag(position.head, position.cursors, self.consumers)
        worst = max(lag.values(), default=position.head)
        limit = self.settings.ready_max_log_lag
        return Check(
            "event_log", worst <= limit, {"lag": worst, "max": limit, "head": position.head}
        )

    def _due_runs(self, now: datetime) -> Check:
        limit = self.settings.ready_max_due_runs
        with self.store.peek() as tx:
            due = tx.ops.due_runs(now, cap=limit + 1)
        return Check("due_runs", due <= limit, {"due": due, "max": limit})

    # --- heartbeats ----------------------------------------------------------------------------

    def beat(self, worker: str, role: str, started_at: datetime) -> None:
        now = self.clock.now()

        def work(tx: Any) -> None:
            tx.ops.beat(worker, role, started_at, now)
            tx.ops.forget_older_than(now - FORGET_AFTER)

        self.store.transact(work)

    def stopped(self, worker: str) -> None:
        self.store.transact(lambda tx: tx.ops.forget(worker))


def log_lag(head: int, cursors: dict[str, int], consumers: Sequence[str]) -> dict[str, int]:
    """Events each consumer has still to handle (all of them, for one that has not started)."""
    names = sorted(set(cursors) | set(consumers))
    return {name: max(head - cursors.get(name, 0), 0) for name in names}


def _brief(exc: Exception) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


class PoolCollector(Collector):
    """This process's database pool (connections in use, and open). The API serves it beside
    the store's gauges; a worker serves it on its own metrics port, since each process has its
    own pool."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        in_use, held = self.store.db.pool_use()
        pool = GaugeMetricFamily(
            "conveyor_db_pool_connections",
            "This process's database connections: in use, and open (in use + idle).",
            labels=["state"],
        )
        pool.add_metric(["in_use"], in_use)
        pool.add_metric(["open"], held)
        yield pool


class StoreCollector(Collector):
    """Gauges of shared state, read through the store when Prometheus scrapes (a few set-based
    reads: the log head and cursors, due runs, outbox by state, heartbeats)."""

    def __init__(self, operations: Operations) -> None:
        self.ops = operations

    def describe(self) -> list[Any]:
        return []  # no reads at registration

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("conveyor_database_up", "1 when the database answered this scrape.")
        try:
            families = list(self._families())
        except Exception as exc:
            log.warning("metrics: database read failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Any]:
        now = self.ops.clock.now()
        with self.ops.store.read() as tx:
            position = tx.ops.log_position()
            due = tx.ops.due_runs(now)
            outbox = tx.ops.outbox_counts()
            beats = tx.ops.heartbeats()
        head = GaugeMetricFamily("conveyor_event_log_head", "The newest event id in the log.")
        head.add_metric([], position.head)
        yield head
        lag = GaugeMetricFamily(
            "conveyor_event_log_lag",
            "Events not yet handled, by log consumer.",
            labels=["consumer"],
        )
        for name, behind in log_lag(position.head, position.cursors, self.ops.consumers).items():
            lag.add_metric([name], behind)
        yield lag
        runs = GaugeMetricFamily("conveyor_runs_due", "Active runs whose timer is due now.")
        runs.add_metric([], due)
        yield runs
        box = GaugeMetricFamily(
            "conveyor_outbox_messages",
            "Outbox messages by channel and state.",
            labels=["channel", "state"],
        )
        for (channel, status), n in sorted(outbox.items()):
            box.add_metric([channel, status], n)
        yield box
        age = GaugeMetricFamily(
            "conveyor_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            labels=["worker", "role"],
        )
        for beat in beats:
            age.add_metric([beat.worker, beat.role], (now - beat.beat_at).total_seconds())
        yield age


class Backups:
    """`conveyor backup` / `restore` (SQLite; PostgreSQL has pg_dump)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def backup(self, target: Path) -> BackupSummary:
        return sqlite_backup.backup(self.store.db, target)

    def restore(self, source: Path, *, replace: bool = False) -> BackupSummary:
        return sqlite_backup.restore(self.store.db, source, replace=replace)
