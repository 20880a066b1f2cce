"""Try before you trust: replay the log through a draft (backtest), test one contact with
injected events, forecast message pressure — with the engine's own code on a virtual clock,
over contacts held in memory, reading the store and writing nothing.

Contacts start as they were when the period starts: their current state with every change the
log recorded since then undone; the log's changes of the period are then redone at their
moments (except those the simulated automations make themselves: those are re-derived).
"""

from __future__ import annotations

import gc
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conveyor.clock import Clock
from conveyor.domain.errors import InvalidInput, NotFound
from conveyor.domain.evaluation import Evaluator, Snapshot
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import parse_definition
from conveyor.services.conditions import ConditionContext
from conveyor.services.engine import Engine
from conveyor.services.engine.dispatch import from_engine
from conveyor.services.policies import contact_timezone, lookback, policy_of
from conveyor.services.segments import Segments
from conveyor.services.simulate.inputs import SYNTHETIC_ID, Injected, made_up
from conveyor.services.simulate.partition import partitioned, shareable
from conveyor.services.simulate.replay import Outbox, Replay
from conveyor.services.simulate.report import Report
from conveyor.services.simulate.world import SimRow, SimTick
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.records import EventRecord
from conveyor.store.store import Store, Tx

DRAFT_ID = -1  # the draft's id when no stored automation has its key
CHUNK = 5000  # events read per query: memory is bounded by contacts, not by events
# A backtest whose period holds this many events (ids, roughly) is split across processes:
# below it, starting them costs more than they save.
PARALLEL_FROM = 50_000
MAX_WORKERS = 8


@contextmanager
def _collecting_less() -> Iterator[None]:
    """The cyclic garbage collector less often during a replay: it holds hundreds of thousands
    of live objects (contacts' facts, runs, messages) that every full collection walks again —
    17 % of a 50,000-contact part's CPU time. What was alive before is set aside (`freeze`),
    and a young collection waits for 50,000 new objects instead of 700; cycles are still
    collected, so memory stays bounded. Backtests running at once (a server's threads) share
    one setting: the first to start changes it, the last to end restores it."""
    with _gc_lock:
        if not _gc_users:
            _gc_saved[:] = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(50_000, _gc_saved[1], _gc_saved[2])
        _gc_users.append(None)
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users.pop()
            if not _gc_users:
                gc.set_threshold(*_gc_saved)
                gc.unfreeze()


_gc_lock = threading.Lock()
_gc_users: list[None] = []
_gc_saved: list[int] = []


@dataclass(frozen=True)
class Scope:
    """Which automations a simulation runs and which contacts it follows."""

    draft: dict[str, Any] | None = None  # an automation definition; None: none
    with_active: bool = False  # also every active automation (their effects re-derived)
    segment: str | None = None  # only contacts in this segment at the start
    sample: int | None = None  # only this many contacts, chosen at random (seeded)
    watch: frozenset[int] | None = frozenset()  # contacts whose path is kept; None: everyone


class Simulator:
    def __init__(self, store: Store, clock: Clock, segments: Segments) -> None:
        self.store = store
        self.clock = clock
        self.segments = segments

    def backtest(
        self,
        workspace: Workspace,
        scope: Scope,
        since: datetime,
        until: datetime | None = None,
        *,
        workers: int | None = None,
    ) -> Report:
        """The workspace's logged events from `since` to `until` (now) through the scope's
        automations, on a virtual clock. `workers`: processes the contacts are split across
        (None: one per core when the period's log is long enough to pay for starting them)."""
        end = until or self.clock.now()
        if since >= end:
            raise InvalidInput("from", "the period must start before it ends")
        with self.store.read() as tx:
            start_id = tx.events.position_at(workspace.id, since)
            end_id = tx.events.position_at(workspace.id, end)
            parts = self._workers(workers, end_id - start_id)
            if parts > 1:  # bad input is refused here, not in a worker
                self._prepare(tx, workspace, scope, since, end, start_id)
        if parts > 1:
            now = self.clock.now()
            return partitioned(self.store.url, now, workspace, scope, since, end, parts)
        return self.part(workspace, scope, since, end, None)

    def part(
        self,
        workspace: Workspace,
        scope: Scope,
        since: datetime,
        end: datetime,
        part: tuple[int, int] | None,
    ) -> Report:
        """A backtest of the contacts whose id is p modulo n (`part` (p, n); None: all).
        Contacts are independent in the engine, so the parts' reports add up to the whole's."""
        began = time.process_time()
        with self.store.read() as tx, _collecting_less():
            start_id = tx.events.position_at(workspace.id, since)
            end_id = tx.events.position_at(workspace.id, end)
            report, replay = self._prepare(tx, workspace, scope, since, end, start_id)
            replay.run(self._chunks(tx, workspace.id, start_id, end_id, report, part), end)
            report.contacts = len(replay.tick.facts)
        report.cpu_seconds = time.process_time() - began
        return report

    def _workers(self, asked: int | None, events: int) -> int:
        if not shareable(self.store.url):
            return 1  # an in-memory database: other processes would open empty ones
        if asked is not None:
            return max(1, asked)
        if events < PARALLEL_FROM:
            return 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return min(cores or 1, MAX_WORKERS)

    def forecast(self, workspace: Workspace, scope: Scope, days: int) -> Report:
        """Message pressure for the next `days`: every active automation (and the draft) over
        the last `days` of the log as the likeliest next `days` (its moments moved forward)."""
        now = self.clock.now()
        scope = Scope(scope.draft, True, scope.segment, scope.sample, scope.watch)
        report = self.backtest(workspace, scope, now - timedelta(days=days), now)
        report.notes.append(
            f"forecast: the last {days} days of events replayed as the next {days}; "
            "dates are those of the replayed days"
        )
        return report

    def try_contact(
        self,
        workspace: Workspace,
        draft: dict[str, Any],
        contact: int | dict[str, Any],
        events: list[Injected],
        days: int,
    ) -> Report:
        """One contact through the draft from now, with these events made to happen at their
        moments; time skips to each next timer. `contact`: a real contact's id (as it is now),
        or the fields, tags and lists of one made up for the test."""
        start = self.clock.now()
        end = start + timedelta(days=days)
        contact_id = contact if isinstance(contact, int) else SYNTHETIC_ID
        scope = Scope(draft, watch=frozenset({contact_id}))
        with self.store.read() as tx:
            if isinstance(contact, int) and not tx.contacts.by_ids(workspace.id, [contact]):
                raise NotFound(f"no contact {contact} in this workspace")
            start_id = tx.events.position_at(workspace.id, start + timedelta(microseconds=1))
            report, replay = self._prepare(tx, workspace, scope, start, end, start_id)
            if not isinstance(contact, int):
                replay.tick.synthetic[contact_id] = made_up(contact, replay.tick.ctx, start)
            replay.tick.load({contact_id})
            made = [
                EventRecord(
                    0,
                    workspace.id,
                    contact_id,
                    "track",
                    e.name,
                    e.properties,
                    {"source": "simulation"},
                    None,
                    start + e.after,
                    start + e.after,
                )  # fmt: skip
                for e in sorted(events, key=lambda e: e.after)
                if start + e.after < end
            ]
            report.events = len(made)
            replay.run([made], end)
            report.contacts = 1
        return report

    # --- building one --------------------------------------------------------------------

    def _prepare(
        self,
        tx: Tx,
        workspace: Workspace,
        scope: Scope,
        start: datetime,
        end: datetime,
        start_id: int,
    ) -> tuple[Report, Replay]:
        row = tx.workspaces.get(workspace.id)
        if row is None:
            raise NotFound("no such workspace")
        workspace = workspace_from_row(row)  # its settings (the send policy) as stored now
        ctx = ConditionContext(tx, workspace)
        stored = {row.key: row for row in ctx.automation_rows.values()}
        engine = Engine(self.store, self.clock, self.segments)
        rows: dict[int, SimRow] = {}
        real: dict[int, int] = {}
        draft_key = None
        if scope.draft is not None:
            automation = parse_definition(tx, workspace, scope.draft)
            draft_key = automation.key
            known = stored.get(automation.key)
            draft_id = known.id if known is not None else DRAFT_ID
            engine.prepared(draft_id, 0, automation)
            rows[draft_id] = SimRow(draft_id, automation.key, 0)
            if known is not None:
                real[draft_id] = known.id
        if scope.with_active:
            for row in stored.values():
                if row.status == "active" and row.key != draft_key:
                    rows[row.id] = SimRow(row.id, row.key, row.version)
                    real[row.id] = row.id
        if not rows:
            raise InvalidInput("automation", "nothing to simulate: give a draft, or --with-active")
        ctx.automation_rows = rows  # type: ignore[assignment]
        ctx.automations = {**ctx.automations, **{r.id: r.key for r in rows.values()}}
        keys = {r.key for r in rows.values()}
        everything = scope.with_active

        def replayable(event: EventRecord) -> bool:
            if everything and from_engine(event):
                return False  # every automation is simulated: what they did is re-derived
            props = event.properties or {}
            return not (event.name.startswith("automation.") and props.get("automation") in keys)

        tick = SimTick(
            engine, tx, ctx, start, start_id,
            replayable=replayable, real_ids=real, admit=self._admit(tx, ctx, scope, start),
        )  # fmt: skip
        default = policy_of(workspace, None)

        def policy_for(contact_id: int) -> Any:
            override = tick.overrides.get(contact_id)  # read with the contact
            return default if override is None else policy_of(workspace, override)

        tick.lookback = max(lookback([default]), 7 * 86400)
        outbox = Outbox(
            policy_for,
            lambda c: contact_timezone(tick.facts.get(c), workspace),
            tick.sent,
            tick.later,
        )
        report = Report(
            {r.id: r.key for r in rows.values()},
            start,
            end,
            ctx.timezone,
            watch=set(scope.watch) if scope.watch is not None else None,
        )
        report.senders = outbox.senders
        if any(t.date for r in rows.values() for t in tick.automation(r.id, r.version).triggers):
            report.notes.append("date triggers are not simulated (only event triggers)")
        if scope.sample is not None:
            report.notes.append(f"a random sample of {scope.sample} contacts")
        return report, Replay(engine, tick, outbox, report.moment)

    def _admit(self, tx: Tx, ctx: ConditionContext, scope: Scope, start: datetime) -> Any:
        chosen: set[int] | None = None
        if scope.sample is not None:
            ids = tx.contacts.ids(ctx.workspace.id)
            chosen = set(random.Random(0).sample(ids, min(scope.sample, len(ids))))
        condition = None
        if scope.segment is not None:
            condition = ctx.segment(scope.segment).condition
        if chosen is None and condition is None:
            return None
        evaluator = Evaluator(ctx.conditions)

        def admit(contact_id: int, snap: Snapshot) -> bool:
            if chosen is not None and contact_id not in chosen:
                return False
            return condition is None or evaluator.evaluate(condition, snap, start).ok

        return admit

    def _chunks(
        self,
        tx: Tx,
        workspace_id: int,
        after: int,
        up_to: int,
        report: Report,
        part: tuple[int, int] | None = None,
    ) -> Iterator[list[EventRecord]]:
        while after < up_to:
            chunk = tx.events.replay(workspace_id, after, up_to, CHUNK, part)
            if not chunk:
                return
            after = chunk[-1].id
            report.events += len(chunk)
            yield chunk
