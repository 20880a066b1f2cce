"""Group commit: one writer thread per API process applies many requests in one transaction.

A tracking request hands its parsed calls to `GroupCommit.submit` and waits on the future it gets
back. The writer thread takes whatever requests are waiting (up to `max_calls` calls), applies
them all in one transaction, and answers each only after that transaction committed: a 2xx still
means committed. Nothing waits on a timer: while one transaction runs, the next requests queue
up, so the group grows with the load and a lone request goes at once.

Why: with one transaction per request, SQLite's writers (and PostgreSQL's commits) queue one by
one, each paying a commit (an fsync) and its own look-ups; the writer lock's queue alone was
~21 % of the server's time at 4 concurrent clients (README, Performance). One transaction for a
group pays one commit and one set-based contact preload for all of its requests.

A failing group must not fail its neighbours: when the group's transaction raises, each of its
requests is applied again alone, in its own transaction, and only the ones that fail then get
the error.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

P = TypeVar("P")  # what a request hands over
R = TypeVar("R")  # what it gets back

log = logging.getLogger(__name__)


@dataclass
class _Pending(Generic[P, R]):
    payload: P
    size: int
    future: Future[R] = field(default_factory=Future)


class GroupCommit(Generic[P, R]):
    """`apply_group(payloads) -> results` runs one transaction for all of them (results in the
    same order); `apply_one(payload) -> result` is the fallback for one request alone."""

    def __init__(
        self,
        apply_group: Callable[[list[P]], list[R]],
        apply_one: Callable[[P], R],
        *,
        max_calls: int = 5000,
        name: str = "group-commit",
    ) -> None:
        self._apply_group = apply_group
        self._apply_one = apply_one
        self._max_calls = max_calls
        self._name = name
        self._queue: queue.SimpleQueue[_Pending[P, R] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.groups = 0  # transactions run (for tests and the benchmark's notes)
        self.requests = 0

    def submit(self, payload: P, size: int = 1) -> Future[R]:
        """Queue a request of `size` calls; the future holds its result once committed."""
        pending: _Pending[P, R] = _Pending(payload, size)
        with self._lock:
            if self._closed:
                raise RuntimeError("the ingest writer is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            self._queue.put(pending)
        return pending.future

    def close(self) -> None:
        """Finish the queued requests, then stop the writer thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                return
            group, calls = [first], first.size
            while calls < self._max_calls:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
                calls += more.size
            try:
                self._run(group)
            except Exception:  # noqa: BLE001 - the writer must outlive any one group
                log.exception("the ingest writer failed a group")
                for pending in group:
                    if not pending.future.done():
                        pending.future.set_exception(RuntimeError("the ingest writer failed"))

    def _run(self, group: list[_Pending[P, R]]) -> None:
        # A request whose waiter gave up (its future cancelled before the writer took it) is
        # not applied; from here on no future can be cancelled.
        group = [p for p in group if p.future.set_running_or_notify_cancel()]
        if not group:
            return
        self.groups += 1
        self.requests += len(group)
        try:
            results = self._apply_group([p.payload for p in group])
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting requests
            if len(group) == 1:
                group[0].future.set_exception(exc)
                return
            log.warning("a group of %d requests failed (%r): each alone again", len(group), exc)
            for pending in group:
                try:
                    pending.future.set_result(self._apply_one(pending.payload))
                except BaseException as alone:  # noqa: BLE001
                    pending.future.set_exception(alone)
            return
        for pending, result in zip(group, results, strict=True):
            pending.future.set_result(result)
