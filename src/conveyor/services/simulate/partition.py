"""A backtest split by contact across processes, one per core: contacts are independent in the
engine, so each process replays its share of the log (contact id modulo the parts) and the
parts' reports add up to the whole's, the same as one process would make.

One way they could differ: the log's ids follow commit order, its receive times the clock, so an
event can come after one received a little later; the replay takes it at the later moment, and in
a part that later event may be another part's. Ingest's batches commit within milliseconds, so
this moves an event by at most that much."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.clock import SimulatedClock
from conveyor.domain.workspaces import Workspace
from conveyor.services.simulate.report import Report, merged
from conveyor.store.store import Store

if TYPE_CHECKING:
    from conveyor.services.simulate import Scope


def shareable(url: str) -> bool:
    """Whether another process can open the database (not an in-memory SQLite)."""
    if not url.startswith("sqlite"):
        return True
    path = url.split("://", 1)[-1].lstrip("/")
    return bool(path) and ":memory:" not in url and "mode=memory" not in url


def _context() -> Any:
    # A copy of this process (fork) starts at once, with everything imported; but a copy of a
    # process with other threads (a server) may inherit a lock one of them held: then a fork
    # server, whose workers start from a process that imported the simulator once.
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["conveyor.services.simulate"])
        return context
    return multiprocessing.get_context("spawn")


def partitioned(
    url: str, now: datetime, workspace: Workspace, scope: Scope, since: datetime, end: datetime,
    parts: int,
) -> Report:  # fmt: skip
    """The backtest in `parts` processes, merged in part order."""
    with ProcessPoolExecutor(parts, mp_context=_context()) as pool:
        futures = [
            pool.submit(_part, url, now, workspace, scope, since, end, (p, parts))
            for p in range(parts)
        ]
        return merged([future.result() for future in futures])


def _part(
    url: str, now: datetime, workspace: Workspace, scope: Scope, since: datetime, end: datetime,
    part: tuple[int, int],
) -> Report:  # fmt: skip
    from conveyor.services.contacts import Contacts
    from conveyor.services.segments import Segments
    from conveyor.services.simulate import Simulator

    store = Store(url)
    clock = SimulatedClock(now)
    try:
        simulator = Simulator(store, clock, Segments(store, clock, Contacts(store, clock)))
        return simulator.part(workspace, scope, since, end, part)
    finally:
        store.close()
