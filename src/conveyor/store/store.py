"""The Store: transactions that hand out the per-aggregate query objects."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection

from conveyor.store.automation_stats import AutomationStatsQueries
from conveyor.store.automations import AutomationQueries
from conveyor.store.catalog import CatalogQueries
from conveyor.store.conditions import AudienceQueries
from conveyor.store.contact_search import ContactSearchQueries
from conveyor.store.contacts import ContactQueries
from conveyor.store.crm import CrmQueries
from conveyor.store.database import Database, refusals
from conveyor.store.events import EventQueries
from conveyor.store.messages import MessageQueries
from conveyor.store.ops import OpsQueries
from conveyor.store.ratelimits import RateLimitQueries
from conveyor.store.reports import ReportQueries
from conveyor.store.scoring import ScoringQueries
from conveyor.store.segments import SegmentQueries
from conveyor.store.sessions import SessionQueries
from conveyor.store.templates import TemplateQueries
from conveyor.store.workspaces import WorkspaceQueries

T = TypeVar("T")


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
        self.sessions = SessionQueries(conn)
        self.automation_stats = AutomationStatsQueries(conn)
        self.contact_search = ContactSearchQueries(conn, dialect)
        self.reports = ReportQueries(conn, dialect)

    def high_water(self) -> int | None:
        """In an event-log consumer's transaction: see `Database.high_water`."""
        assert self._db is not None, "a consumer's transaction comes from Store.write"
        return self._db.high_water(self._conn)


class Store:
    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.db = Database(url, **engine_kwargs)

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @contextlib.contextmanager
    def write(self, *, follow_log: bool = False) -> Iterator[Tx]:
        with refusals(), self.db.write_connection(follow_log=follow_log) as conn:
            yield Tx(conn, writing=True, dialect=self.dialect, db=self.db)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with refusals(), self.db.read_connection() as conn:
            yield Tx(conn, writing=False, dialect=self.dialect)

    @contextlib.contextmanager
    def peek(self) -> Iterator[Tx]:
        """A Tx for one read statement, outside any transaction."""
        with self.db.peek_connection() as conn:
            yield Tx(conn, writing=False, dialect=self.dialect)

    def transact(self, work: Callable[[Tx], T], *, follow_log: bool = False) -> T:
        """Run `work` in a write transaction, again from the start if it lost a race to a peer.
        `follow_log`: the transaction of an event-log consumer (see `Tx.high_water`)."""

        def attempt() -> T:
            with self.write(follow_log=follow_log) as tx:
                return work(tx)

        return self.db.retrying(attempt)

    def close(self) -> None:
        self.db.dispose()
