"""Following the event log: one mechanism for every consumer (segments, the engine, …).

Each consumer is a named cursor. A pass reads the batch past the cursors once, hands each
consumer the events past its own cursor, workspace by workspace, and moves the cursors in the
same transaction as the consumers' effects: a killed process resumes exactly where it stopped.
Events are read only up to the committed high-water mark, so none committed late is skipped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from conveyor.clock import Clock
from conveyor.services.conditions import ConditionContext, Contexts
from conveyor.store.store import Store, Tx

# (transaction, the workspace's condition context, its events in log order, now)
Handler = Callable[[Tx, ConditionContext, list[Any], datetime], None]


class LogConsumer:
    def __init__(self, store: Store, clock: Clock, handlers: Sequence[tuple[str, Handler]]):
        self.store = store
        self.clock = clock
        self.handlers = list(handlers)
        self.names = [name for name, _ in self.handlers]
        self.contexts = Contexts()

    def process(self, limit: int = 1000, *, looked: bool = False) -> int:
        """Hand the next batch to the consumers; how many events that was (0: caught up).
        `looked`: the caller has just seen events past the cursors (`WorkQueries.pending`)."""
        if not looked:
            with self.store.peek() as tx:
                if not tx.events.behind(self.names):
                    return 0  # nothing new: no need to make writers wait for the high-water mark
        return self.store.transact(lambda tx: self._process(tx, limit), follow_log=True)

    def _process(self, tx: Tx, limit: int) -> int:
        positions = tx.events.cursors(self.names)  # locked; absent when another process has it
        if not positions:
            return 0
        batch = tx.events.after(min(positions.values()), tx.high_water(), limit)
        if not batch:
            return 0
        now = self.clock.now()
        by_workspace: dict[int, list[Any]] = defaultdict(list)
        for row in batch:
            if row.contact_id is not None:
                by_workspace[row.workspace_id].append(row)
        for workspace_id, rows in by_workspace.items():
            ctx = self.contexts.current(tx, workspace_id, rows[-1].catalog_version)
            for name, handler in self.handlers:
                if name in positions:
                    mine = [r for r in rows if r.id > positions[name]]
                    if mine:
                        handler(tx, ctx, mine, now)
        tx.events.move_cursors(list(positions), batch[-1].id)
        return len(batch)
