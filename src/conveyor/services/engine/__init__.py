"""The engine: enrolls contacts when their events match triggers, and moves runs along.

It follows the event log as a consumer (after segment membership, in the same pass and
transaction): matching events enroll contacts under the entry rules and wake the runs that wait
for them, and those runs advance at once. `execute` claims runs whose timer is due (SKIP LOCKED
on PostgreSQL). Every tick is one transaction: run state, step log, contact changes with their
system events and outbox rows commit together, so a killed worker loses nothing and repeats no
internal effect. The decisions themselves are the domain's pure `entry.decide`/`run.advance`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from conveyor import telemetry
from conveyor.clock import Clock
from conveyor.domain.automations import Automation
from conveyor.domain.automations.triggers import TriggerIndex
from conveyor.domain.errors import Conflict, NotFound
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import parse_definition
from conveyor.services.conditions import ConditionContext, Dependencies, dependencies
from conveyor.services.engine import dates, dispatch
from conveyor.services.engine.tick import Tick
from conveyor.services.log import LogConsumer
from conveyor.services.reports import LOG_CONSUMER as REPORTS
from conveyor.services.reports import Reports
from conveyor.services.scoring import LOG_CONSUMER as SCORING
from conveyor.services.scoring import Scoring
from conveyor.services.segments import LOG_CONSUMER as SEGMENTS
from conveyor.services.segments import Segments
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.store import Store, Tx
from conveyor.store.work import Pending

LOG_CONSUMER = "engine"
FOLD_SECONDS = 1.0  # the reports' funnel, while events keep coming (see `Engine.dispatch`)


class Engine:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        segments: Segments,
        *,
        batch: int = 1000,
        sweeps: tuple[Callable[[], int], ...] = (),
        scoring: Scoring | None = None,
        reports: Reports | None = None,
    ) -> None:
        self.store = store
        self.sweeps = sweeps  # other timed work that records events (overdue tasks)
        self.clock = clock
        self.segments = segments
        self.scoring = scoring or Scoring(store, clock, batch=batch)
        self.reports = reports or Reports(store, clock)
        self.batch = batch  # events per pass, due runs per claim: one transaction's worth
        self._next_fold = 0.0  # time.monotonic() of the next fold of the step log
        self._parsed: dict[tuple[int, int], Automation] = {}
        self._watched: dict[tuple[int, int, str | None], list[Dependencies]] = {}
        # One read of each batch: scores first (segments and triggers in the same pass see
        # them), then segment membership, then triggers and wake-ups.
        self.log = LogConsumer(
            store,
            clock,
            [
                (SCORING, self.scoring.on_events),
                (SEGMENTS, segments.on_events),
                (LOG_CONSUMER, self.on_events),
                (REPORTS, self.reports.on_events),
            ],
        )

    def pending(self) -> Pending:
        """Which of the queues a worker serves hold work now: one statement (see `work.py`)."""
        with self.store.peek() as tx:
            return tx.work.pending(self.clock.now(), self.log.names)

    def dispatch(self, limit: int | None = None, *, work: Pending | None = None) -> int:
        """Follow the event log (segments, then triggers and wake-ups), and the step log into
        the reports' funnel; how many events and steps. `work`: what the caller's look at the
        queues found just now (no look of its own then).

        The funnel is folded when the event log is caught up, and at most every
        `FOLD_SECONDS` while events keep coming: its transaction waits for the writers in
        flight (the step log's high-water mark), which at hundreds of events a second cost the
        triggers more latency than a funnel a second behind is worth."""
        events = 0
        if work is None or work.log:
            events = self.log.process(limit or self.batch, looked=work is not None)
        moment = time.monotonic()
        if (events and moment < self._next_fold) or (work is not None and not work.steps):
            return events
        self._next_fold = moment + FOLD_SECONDS
        return events + self.reports.fold_steps(looked=work is not None)

    def execute(self, limit: int | None = None, *, looked: bool = False) -> int:
        """Advance up to `limit` runs whose timer is due; how many were claimed. `looked`: the
        caller has just seen one due."""
        if not looked:
            with self.store.peek() as tx:  # no write transaction (nor SQLite's lock) when idle
                if not tx.automations.any_due(self.clock.now()):
                    return 0
        return self.store.transact(lambda tx: self._execute(tx, limit or self.batch))

    def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Dispatch and execute until nothing is left to do now (for tests and the CLI)."""
        self.sweep_dates()
        for sweep in self.sweeps:
            sweep()
        self.scoring.arm()
        for _ in range(max_rounds):
            if not self.dispatch() + self.scoring.sweep() + self.execute():
                return
        raise RuntimeError("the engine did not settle")

    def prepared(self, automation_id: int, version: int, automation: Automation) -> None:
        """Take a definition parsed elsewhere for this (id, version): the simulator's draft,
        which is not stored."""
        self._parsed[(automation_id, version)] = automation

    def automation(
        self, tx: Tx, ctx: ConditionContext, automation_id: int, version: int
    ) -> Automation:
        """A version's parsed definition (versions never change, so parsed once per process)."""
        key = (automation_id, version)
        if key not in self._parsed:
            definition = tx.automations.definition(automation_id, version)
            row = ctx.automation_rows[automation_id]
            self._parsed[key] = parse_definition(tx, ctx.workspace, definition, key=row.key)
        return self._parsed[key]

    # --- the log -----------------------------------------------------------------------------

    def on_events(self, tx: Tx, ctx: ConditionContext, rows: list[Any], now: datetime) -> None:
        messages = []
        if any(r.name == "list.confirmation_requested" for r in rows):
            messages = dispatch.confirmation_requests(ctx, rows, now)
        self.react(Tick(self, tx, ctx, now), rows)
        tx.automations.add_messages(messages)

    def react(self, tick: Tick, rows: list[Any]) -> None:
        """A batch of the log through a tick: enroll, wake, advance, flush (live, and the
        simulator's in-memory tick)."""
        relevant = self.relevant(tick, rows)
        if relevant:
            dispatch.on_events(tick, relevant, self.index(tick))
            tick.flush()

    def relevant(self, tick: Tick, rows: list[Any]) -> list[Any]:
        """The events of a batch that trigger something or may wake a waiting run: only their
        contacts need loading. Events a tick wrote itself woke what they concern in that tick
        (`settle`)."""
        index, wakes = self.index(tick), self.wakes(tick)
        return [
            r
            for r in rows
            if index.matching(r.name, r.properties or {})
            or (not dispatch.from_engine(r) and wakes.touched_by(r.name, r.properties or {}))
        ]

    def watched(self, tick: Tick, run: Any) -> list[Dependencies]:
        """What can wake a run at its node, as dependencies (kept per version and node)."""
        key = (run.automation_id, run.version, run.node)
        if key not in self._watched:
            automation = tick.automation(run.automation_id, run.version)
            self._watched[key] = [dependencies(c) for c in automation.watched(run.node)]
        return self._watched[key]

    def wakes(self, tick: Tick) -> Dependencies:
        """What any run of any automation may wait for, built once per catalog version."""
        if "engine.wakes" not in tick.ctx.derived:
            found = Dependencies()
            for row in tick.rows.values():
                automation = tick.automation(row.id, row.version)
                for condition in automation.watched(None) + [
                    n.condition for n in automation.nodes.values() if n.condition is not None
                ]:
                    dependencies(condition, found)
            tick.ctx.derived["engine.wakes"] = found
        return tick.ctx.derived["engine.wakes"]

    def index(self, tick: Tick) -> TriggerIndex[int]:
        """Active automations by trigger event, built once per catalog version."""
        if "engine.index" not in tick.ctx.derived:
            active = [r for r in tick.rows.values() if r.status == "active"]
            index = TriggerIndex((r.id, tick.automation(r.id, r.version)) for r in active)
            tick.ctx.derived["engine.index"] = index
        return tick.ctx.derived["engine.index"]

    # --- timers ---------------------------------------------------------------------------

    def _execute(self, tx: Tx, limit: int) -> int:
        now = self.clock.now()
        claimed = tx.automations.claim_due(now, limit)
        telemetry.RUNS_CLAIMED.inc(len(claimed))
        by_workspace: dict[int, list[Any]] = defaultdict(list)
        for run in claimed:
            by_workspace[run.workspace_id].append(run)
        if by_workspace:
            workspaces = {row.id: row for row in tx.workspaces.all()}
            for workspace_id, runs in by_workspace.items():
                tick = Tick(self, tx, self.log.contexts.get(tx, workspaces[workspace_id]), now)
                tick.load({run.contact_id for run in runs})
                for run in runs:
                    tick.plan(tick.adopt(run), "due")
                tick.settle()
                tick.flush()
        return len(claimed)

    def sweep_dates(self) -> int:
        """Enroll contacts whose date trigger falls today; only workspaces that have one."""
        with self.store.read() as tx:
            workspaces = {row.id: workspace_from_row(row) for row in tx.workspaces.all()}
            candidates = tx.automations.active_everywhere()
            wanted: dict[int, list[int]] = defaultdict(list)
            contexts: dict[int, ConditionContext] = {}
            for row in candidates:
                # A parsed version needs no catalog: build a workspace's context (six reads)
                # only for a version not parsed yet — not for every workspace on every sweep.
                automation = self._parsed.get((row.id, row.version))
                if automation is None:
                    if row.workspace_id not in contexts:
                        workspace = workspaces[row.workspace_id]
                        contexts[row.workspace_id] = ConditionContext(tx, workspace)
                    ctx = contexts[row.workspace_id]
                    automation = self.automation(tx, ctx, row.id, row.version)
                if any(t.date for t in automation.triggers):
                    wanted[row.workspace_id].append(row.id)
        return sum(
            self.store.transact(lambda tx, ws=ws, ids=ids: self._sweep(tx, workspaces[ws], ids))
            for ws, ids in wanted.items()
        )

    def _sweep(self, tx: Tx, workspace: Workspace, automation_ids: list[int]) -> int:
        tick = Tick(self, tx, ConditionContext(tx, workspace), self.clock.now())
        entered = dates.sweep(tick, automation_ids)
        tick.flush()
        return entered

    # --- by hand -----------------------------------------------------------------------------

    def enroll(self, workspace: Workspace, key: str, contact_id: int) -> str:
        """Enroll a contact by hand (or API); entry rules still apply. Says what happened."""

        def work(tx: Tx) -> str:
            tick = Tick(self, tx, ConditionContext(tx, workspace), self.clock.now())
            row = tick.by_key.get(key)
            if row is None:
                raise NotFound(f"no automation '{key}' in this workspace")
            if row.status != "active":
                raise Conflict(f"automation '{key}' is {row.status}; activate it first")
            tick.load({contact_id})
            if contact_id not in tick.facts:
                raise NotFound(f"no contact {contact_id} in this workspace")
            decision = tick.enroll(row.id, contact_id, {}, source="manual")
            tick.settle()
            tick.flush()
            return decision.summary

        return self.store.transact(work)
