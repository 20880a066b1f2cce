"""The Store: transactions that hand out the per-aggregate query objects."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from conveyor.store.automation_drafts import AutomationDraftQueries
from conveyor.store.automation_stats import AutomationStatsQueries
from conveyor.store.automations import AutomationQueries
from conveyor.store.bulk import Lookup
from conveyor.store.bulk_jobs import BulkJobQueries
from conveyor.store.campaigns import CampaignQueries
from conveyor.store.catalog import CatalogQueries
from conveyor.store.conditions import AudienceQueries
from conveyor.store.contact_search import ContactSearchQueries
from conveyor.store.contacts import ContactQueries
from conveyor.store.crm import CrmQueries
from conveyor.store.database import LOG_LOCK_SQL, Database, log, refusals
from conveyor.store.deliverability import DeliverabilityQueries
from conveyor.store.events import EventQueries
from conveyor.store.experiments import ExperimentQueries
from conveyor.store.messages import MessageQueries
from conveyor.store.ops import OpsQueries
from conveyor.store.ratelimits import RateLimitQueries
from conveyor.store.reports import ReportQueries
from conveyor.store.schema import metadata
from conveyor.store.scoring import ScoringQueries
from conveyor.store.segments import SegmentQueries
from conveyor.store.sessions import SessionQueries
from conveyor.store.templates import TemplateQueries
from conveyor.store.work import WorkQueries
from conveyor.store.workspaces import WorkspaceQueries

T = TypeVar("T")
# The unit of work open in this thread (see `Store.unit`), if any.
_UNIT: contextvars.ContextVar[Tx | None] = contextvars.ContextVar("conveyor_unit", default=None)


class Tx:
    """One open transaction; everything done through it commits or rolls back together.

    Its connection is the store's own: callers go through the query objects, never SQL."""

    def __init__(
        self, conn: Connection, *, writing: bool, dialect: str, db: Database | None = None
    ) -> None:
        self._conn = conn
        self._db = db
        self.writing = writing
        self.dialect = dialect
        # Opened with `log_lock_later` and the event log's writer lock not taken yet.
        self.log_lock_pending = False
        self.workspaces = WorkspaceQueries(conn)
        self.catalog = CatalogQueries(conn)
        self.contacts = ContactQueries(conn, lock_rows=writing and dialect == "postgresql")
        self.events = EventQueries(conn, dialect)
        self.segments = SegmentQueries(conn, dialect)
        self.automations = AutomationQueries(conn, dialect)
        self.messages = MessageQueries(conn, dialect)
        self.templates = TemplateQueries(conn)
        self.audiences = AudienceQueries(conn, dialect)
        self.rate_limits = RateLimitQueries(conn, dialect)
        self.crm = CrmQueries(conn, dialect)
        self.scoring = ScoringQueries(conn, dialect)
        self.ops = OpsQueries(conn, dialect)
        self.campaigns = CampaignQueries(conn, dialect)
        self.bulk_jobs = BulkJobQueries(conn, dialect)
        self.experiments = ExperimentQueries(conn)
        self.deliverability = DeliverabilityQueries(conn, dialect)
        self.sessions = SessionQueries(conn)
        self.automation_stats = AutomationStatsQueries(conn)
        self.contact_search = ContactSearchQueries(conn, dialect)
        self.reports = ReportQueries(conn, dialect)
        self.automation_drafts = AutomationDraftQueries(conn)
        self.work = WorkQueries(conn)

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction: what `work` inside it did is undone alone if it raises."""
        with self._conn.begin_nested():
            yield

    def log_lock_lookup(self) -> list[Lookup]:
        """The event log's writer lock as the first statement of a pipeline (`bulk.pipelined`),
        when this transaction was opened with `log_lock_later` and has not taken it yet; else
        nothing. Whoever calls this sends it before writing."""
        if not self.log_lock_pending:
            return []
        self.log_lock_pending = False
        return [Lookup(None, (), LOG_LOCK_SQL, ())]

    def take_log_lock(self) -> None:
        if self.log_lock_pending:
            self.log_lock_pending = False
            self._conn.exec_driver_sql(LOG_LOCK_SQL)

    def high_water(self) -> int | None:
        """In an event-log consumer's transaction: see `Database.high_water`."""
        assert self._db is not None, "a consumer's transaction comes from Store.write"
        return self._db.high_water(self._conn)

    def steps_high_water(self) -> int:
        """In a step-log consumer's transaction: see `Database.steps_high_water`."""
        assert self._db is not None, "a consumer's transaction comes from Store.write"
        return self._db.steps_high_water(self._conn)


class Store:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url  # what another process opens to read the same database
        self.db = Database(url, **engine_kwargs)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    def _unit(self) -> Tx | None:
        tx = _UNIT.get()
        return tx if tx is not None and tx._db is self.db else None

    @contextlib.contextmanager
    def unit(self, *, commit: bool = True) -> Iterator[Tx]:
        """One transaction for many service calls: while it is open, every `transact`, `read`,
        `write` and `peek` of this store in this thread runs in it (and sees what the calls
        before wrote). All of it commits at the end — or none of it, when `commit` is False
        (a dry run) or something raised. Units do not nest."""
        if self._unit() is not None:
            raise RuntimeError("a unit of work is open already")

        class _DryRun(Exception):
            pass

        try:
            with self.write() as tx:
                token = _UNIT.set(tx)
                try:
                    yield tx
                finally:
                    _UNIT.reset(token)
                if not commit:
                    raise _DryRun
        except _DryRun:
            pass

    @contextlib.contextmanager
    def write(self, *, follow_log: bool = False, log_lock_later: bool = False) -> Iterator[Tx]:
        """`log_lock_later`: the work takes the event log's writer lock itself, before it writes
        (`Tx.log_lock_lookup`, in its first pipeline; PostgreSQL) — see `Database`."""
        unit = self._unit()
        if unit is not None:
            yield unit
            return
        later = log_lock_later and not follow_log and self.dialect == "postgresql"
        with (
            refusals(),
            self.db.write_connection(follow_log=follow_log, log_lock_later=later) as conn,
        ):
            tx = Tx(conn, writing=True, dialect=self.dialect, db=self.db)
            tx.log_lock_pending = later
            yield tx
            if tx.log_lock_pending:  # nothing took it: take it now, before the commit
                tx.take_log_lock()

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        unit = self._unit()
        if unit is not None:
            yield unit
            return
        with refusals(), self.db.read_connection() as conn:
            yield Tx(conn, writing=False, dialect=self.dialect)

    @contextlib.contextmanager
    def peek(self) -> Iterator[Tx]:
        """A Tx for one read statement, outside any transaction."""
        unit = self._unit()
        if unit is not None:
            yield unit
            return
        with self.db.peek_connection() as conn:
            yield Tx(conn, writing=False, dialect=self.dialect)

    def transact(
        self, work: Callable[[Tx], T], *, follow_log: bool = False, log_lock_later: bool = False
    ) -> T:
        """Run `work` in a write transaction, again from the start if it lost a race to a peer.
        `follow_log`: the transaction of an event-log consumer (see `Tx.high_water`);
        `log_lock_later`: see `write`."""

        unit = self._unit()
        if unit is not None:
            return work(unit)  # inside a unit of work: its transaction, retried as a whole

        def attempt() -> T:
            with self.write(follow_log=follow_log, log_lock_later=log_lock_later) as tx:
                return work(tx)

        return self.db.retrying(attempt)

    def refresh_statistics(self, *tables: str) -> None:
        """Have PostgreSQL's planner look at `tables` again, now (`ANALYZE`), after a bulk load
        grew them. Autovacuum would, within a minute if it is on — the minute in which a
        marketer saves a segment over the contacts just imported: planned on the statistics
        of the empty table, the segment's first count over 10,000 new contacts took ~11 s here
        instead of 0.8 s (PostgreSQL's docs: "Run ANALYZE Afterwards", when populating a
        database). ANALYZE samples at most 30,000 rows a table and blocks no reader or writer.
        SQLite plans without statistics unless told to gather them, and has none to refresh.
        A failure is logged, not raised: the load it follows has committed, and statistics only
        make later reads faster."""
        unknown = set(tables) - {table.name for table in metadata.sorted_tables}
        if unknown:
            raise ValueError(f"no table {', '.join(sorted(unknown))}")
        if self.dialect != "postgresql" or self._unit() is not None:
            return
        try:
            with self.db.peek_connection() as conn:
                conn.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
        except SQLAlchemyError as exc:
            log.warning("ANALYZE %s failed, autovacuum will do it: %s", ", ".join(tables), exc)

    def close(self) -> None:
        self.db.dispose()
