"""The worker's one look at every queue it serves: which of them holds work now.

An engine round used to peek at each queue in turn (the event log, the step log, decaying
scores, due runs, campaigns, bulk jobs): six statements, each on its own connection checkout —
on PostgreSQL a pre-ping and the statement, twelve round trips — before doing anything, and
again on every idle poll. `pending` asks all six in one statement; each queue's condition is
the one its own look (`EventQueries.behind`, `AutomationQueries.any_due`, …) asks, so the two
cannot disagree.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, select

from conveyor.store import automations, bulk_jobs, campaigns, events, reports, scoring
from conveyor.store.schema import UTCDateTime


@dataclass(frozen=True, slots=True)
class Pending:
    """Which queues held work when the worker looked."""

    log: bool  # events past a consumer's cursor
    steps: bool  # steps not folded into the reports' funnel
    scores: bool  # scores whose decay crossed a threshold
    runs: bool  # runs whose timer is due
    campaigns: bool  # campaigns to start, finish or decide
    bulk: bool  # bulk jobs queued or running

    def __bool__(self) -> bool:
        return self.log or self.steps or self.scores or self.runs or self.campaigns or self.bulk


class WorkQueries:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def pending(self, now: datetime, consumers: list[str]) -> Pending:
        """One unlocked statement: which queues hold work at `now` (`consumers`: the event
        log's cursors the worker moves)."""
        row = self.conn.execute(_look(tuple(consumers)), {"now": now}).one()
        return Pending(*(bool(value) for value in row))


@functools.cache
def _look(consumers: tuple[str, ...]) -> Select[Any]:
    """`pending`'s statement, built once per set of consumers (building it cost more CPU than
    running it), the clock a bound parameter."""
    at = bindparam("now", type_=UTCDateTime())
    return select(
        events.behind_clause(list(consumers)),
        reports.steps_behind_clause(),
        scoring.due_clause(at),
        automations.due_clause(at),
        campaigns.waiting_clause(at),
        bulk_jobs.waiting_clause(),
    )
