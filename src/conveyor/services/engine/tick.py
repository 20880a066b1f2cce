"""One transaction's engine work in one workspace: the shell around the pure core.

A tick loads what its contacts need in a few set-based reads (contacts with tags and lists, the
events conditions ask about, unfinished runs), asks `entry.decide` and `run.advance` what to do,
carries out their effects, and writes runs, steps, contact changes and outbox rows with a few
bulk statements in the caller's transaction. Runs entered in a tick advance in that tick.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.domain.automations import (
    Automation,
)
from conveyor.domain.automations.entry import Decision, RunRef, decide, releasable
from conveyor.domain.automations.nodes.actions import ContactRules
from conveyor.domain.automations.run import RunState, advance
from conveyor.domain.conditions import DEAL_EVENTS
from conveyor.domain.evaluation import Evaluator, EventFact, RunFact, Snapshot, event_names
from conveyor.services import snapshots
from conveyor.services.conditions import ConditionContext
from conveyor.services.contact_writer import Catalog, ContactWriter
from conveyor.services.crm import effects as crm_effects
from conveyor.services.crm.writer import CrmWriter
from conveyor.services.engine import effects, writes
from conveyor.services.engine.runs import LiveRun
from conveyor.store.store import Tx

if TYPE_CHECKING:
    from conveyor.services.engine import Engine

MAX_ADVANCES = 5  # per run and tick: a run woken again and again carries on next tick


class Tick:
    def __init__(self, engine: Engine, tx: Tx, ctx: ConditionContext, now: datetime) -> None:
        self.engine = engine
        self.tx = tx
        self.ctx = ctx
        self.workspace = ctx.workspace
        self.now = now
        self.evaluator = Evaluator(ctx.conditions)
        catalog = Catalog(tx, ctx.workspace.id, field_rows=ctx.field_rows, list_rows=ctx.list_rows)
        self.writer = ContactWriter(tx, ctx.workspace, now, source="automation", catalog=catalog)
        self.writer.observer = self.observed
        self.request_id = self.writer.request_id  # this tick's own (an API call's), if any
        self.crm = CrmWriter(tx, self.writer)
        self.rules = ContactRules(
            ctx.fields,
            {row.key: row.double_opt_in for row in ctx.list_rows},
            ctx.workspace.default_country,
        )
        self.rows = ctx.automation_rows
        self.by_key = {row.key: row for row in self.rows.values()}
        if "engine.names" not in ctx.derived:  # the events any automation's conditions count
            names: set[str] = set()
            for row in self.rows.values():
                for condition in self.automation(row.id, row.version).conditions():
                    names |= event_names(condition, ctx.conditions)
            ctx.derived["engine.names"] = names
        self.names: set[str] = ctx.derived["engine.names"]
        self.facts: dict[int, Snapshot] = {}
        self.inside: dict[int, list[LiveRun]] = {}  # each contact's unfinished runs
        self.known: dict[int, LiveRun] = {}  # stored runs by id
        self.entries: dict[tuple[int, int], list[datetime]] = {}  # (contact, automation)
        self.touched: dict[int, LiveRun] = {}  # by id(run), in order
        self.agenda: list[LiveRun] = []  # runs to advance now, in order (see `plan`)
        self.planned: dict[int, str] = {}  # id(run) of the runs on the agenda: why it is there
        self.advanced: list[str] = []  # why each advance of this tick happened (for metrics)
        self.steps: list[tuple[LiveRun | None, dict[str, Any]]] = []
        self.messages: list[tuple[LiveRun, int, dict[str, Any]]] = []
        self.running: LiveRun | None = None
        self.origins: list[tuple[int, int, LiveRun]] = []  # events [start, end) a run recorded
        self.settled = 0  # events of this tick whose wake-ups are done

    # --- loading -----------------------------------------------------------------------------

    def automation(self, automation_id: int, version: int) -> Automation:
        return self.engine.automation(self.tx, self.ctx, automation_id, version)

    def load(self, contact_ids: set[int]) -> None:
        """Facts and unfinished runs of these contacts (runs locked against peers)."""
        wanted = {c for c in contact_ids if c not in self.inside}
        if not wanted:
            return
        loaded = snapshots.load(self.tx, self.ctx, wanted, self.names, lock_runs=True)
        self.facts.update(loaded.snapshots)
        self.writer.adopt(loaded.rows, loaded.tags, loaded.subscriptions)
        for contact_id in wanted:
            self.inside[contact_id] = []
        for row in loaded.runs:
            self.adopt(row)

    def adopt(self, row: Any) -> LiveRun:
        run = self.known.get(row.id)
        if run is None:
            run = self.known[row.id] = LiveRun.from_row(row)
            self.inside.setdefault(run.contact_id, []).append(run)
        return run

    def observed(self, contact_id: int, name: str, properties: dict[str, Any]) -> None:
        """An event this tick records: conditions of later steps count it, as they would after
        reading it back from the log."""
        facts = self.facts.get(contact_id)
        if facts is None:
            return
        if name in self.names:
            facts.events.append(EventFact(name, self.now, properties, "system"))
        if name in DEAL_EVENTS and isinstance(properties.get("deal_id"), int):
            crm_effects.keep_deal(facts, name, properties)
        key = properties.get("automation")
        if name == "automation.entered" and key:  # active or queued, as snapshots count them
            facts.runs.append(RunFact(key, self.now))
        elif name in ("automation.completed", "automation.exited") and key:
            facts.runs[:] = [r for r in facts.runs if r.automation != key]

    def refs(self, contact_id: int) -> list[RunRef]:
        out = []
        for run in self.inside.get(contact_id, ()):
            automation = self.automation(run.automation_id, run.version)
            out.append(
                RunRef(id(run), automation.key, run.status, run.entered_at, automation.priority)
            )
        return out

    def entered(self, contact_id: int, automation_id: int) -> list[datetime]:
        """When the contact entered this automation before (for repeat rules): read for every
        contact of the tick at once, the first time any of them needs it."""
        if (contact_id, automation_id) not in self.entries:
            contacts = [c for c in self.inside if (c, automation_id) not in self.entries]
            for c in contacts:
                self.entries[(c, automation_id)] = []
            for row in self.tx.automations.entries_of(contacts, [automation_id]):
                self.entries[(row.contact_id, automation_id)].append(row.entered_at)
        return self.entries[(contact_id, automation_id)]

    # --- entering ------------------------------------------------------------------------------

    def enroll(
        self,
        automation_id: int,
        contact_id: int,
        trigger: dict[str, Any],
        *,
        source: str,
        request_id: str | None = None,
    ) -> Decision:
        """Let a contact in (or queue or skip it, saying why). `request_id`: the HTTP request
        whose event triggered it, carried by the run into its steps' events and messages."""
        row = self.rows[automation_id]
        automation = self.automation(row.id, row.version)
        self.load({contact_id})
        facts = self.facts.get(contact_id)
        if facts is None:
            return Decision("skip", "no such contact")
        previous = self.writer.request_id
        self.writer.request_id = request_id or previous
        try:
            return self._enroll(row, automation, contact_id, facts, trigger, source)
        finally:
            self.writer.request_id = previous

    def _enroll(
        self,
        row: Any,
        automation: Automation,
        contact_id: int,
        facts: Snapshot,
        trigger: dict[str, Any],
        source: str,
    ) -> Decision:
        entries = (
            []
            if automation.entry.repeat == "every_time" and not automation.entry.max_per_day
            else self.entered(contact_id, row.id)
        )
        decision = decide(
            automation,
            inside=self.refs(contact_id),
            entries=entries,
            facts=facts,
            now=self.now,
            evaluator=self.evaluator,
            running=id(self.running) if self.running is not None else None,
        )
        if decision.outcome == "skip":
            note = decision.note or {"reason": decision.reason}
            self.record(contact_id, "automation.entry_skipped", {"automation": row.key, **note})
            reason = {"why": f"not entered: {decision.reason}", "via": source, **decision.note}
            self.step(
                None, "entry", "entry_skipped", reason, automation=(row.id, row.version, contact_id)
            )
            return decision
        queued = decision.outcome == "queue"
        run = LiveRun(
            None, row.id, row.version, contact_id, "queued" if queued else "active",
            automation.start, {}, None if queued else self.now, 0, trigger, self.now,
            new=True, changed=True, request_id=self.writer.request_id,
        )  # fmt: skip
        self.inside[contact_id].append(run)
        self.touch(run)
        entries.append(self.now)
        self.record(
            contact_id,
            "automation.entered",
            {"automation": row.key, "queued": queued, "via": source, **decision.note},
        )
        for victim in decision.preempt:
            self.preempt(contact_id, victim, row.key, automation)
        if not queued:
            self.plan(run, "entered")
        return decision

    def preempt(
        self, contact_id: int, victim: RunRef, newcomer: str, automation: Automation
    ) -> None:
        """End a run a higher-priority newcomer of its group displaces, saying why."""
        run = next(r for r in self.inside[contact_id] if id(r) == victim.id)
        group = automation.priority
        assert group is not None
        level = self.automation(run.automation_id, run.version).level
        why = (
            f"preempted by {newcomer} (priority group {group.group}: level {group.level} > {level})"
        )
        self.step(run, run.node or "", "ended", {"why": why, "by": newcomer, "group": group.group})
        self.finish(run, "ended", {"because": newcomer, "group": group.group})

    # --- advancing -----------------------------------------------------------------------------

    def plan(self, run: LiveRun, why: str = "woken") -> None:
        """Put a run on the agenda; `why`: entered, due, woken or released (counted)."""
        if id(run) not in self.planned:
            self.planned[id(run)] = why
            self.agenda.append(run)

    def pending(self, contact_id: int, automation_id: int) -> bool:
        """Whether a run of this contact in this automation waits on the agenda."""
        return any(
            r.automation_id == automation_id and id(r) in self.planned
            for r in self.inside.get(contact_id, ())
        )

    def drain(self) -> None:
        """Advance every run on the agenda (entries, wake-ups, releases, due runs)."""
        agenda, self.agenda = self.agenda, []
        agenda.reverse()
        while agenda or self.agenda:
            if not agenda:
                agenda, self.agenda = self.agenda, []
                agenda.reverse()
            run = agenda.pop()
            why = self.planned.pop(id(run), "woken")
            if run.status != "active":
                continue
            if run.advanced >= MAX_ADVANCES:
                run.wake_at = self.now
                self.touch(run)
                continue
            run.advanced += 1
            self.advanced.append(why)
            self.advance(run)

    def settle(self) -> None:
        """Advance everything on the agenda; then wake the contacts' waiting runs that the
        events this tick recorded concern (a tag added by one run may be another's goal), and
        again, until nothing moves. A run is not woken by its own events: it saw its changes
        as it went. Events written by a tick need no wake-up pass of the log consumer."""
        while True:
            self.drain()
            events = self.writer.recorded(self.settled)
            first, self.settled = self.settled, self.settled + len(events)
            for offset, (contact_id, name, props) in enumerate(events):
                origin = self._origin(first + offset)
                for run in self.inside.get(contact_id or 0, ()):
                    if run is origin or run.status != "active":
                        continue
                    if self.watches(run, name, props):
                        self.plan(run)
            if not self.agenda:
                return

    def watches(self, run: LiveRun, name: str, properties: dict[str, Any]) -> bool:
        """Whether an event can change what a run at its node is waiting for."""
        return any(d.touched_by(name, properties) for d in self.engine.watched(self, run))

    def _position(self) -> int:
        return self.writer.position

    def _origin(self, position: int) -> LiveRun | None:
        """The run whose advance recorded the event at `position`, if one did."""
        i = bisect_right(self.origins, position, key=lambda window: window[0]) - 1
        if i >= 0 and position < self.origins[i][1]:
            return self.origins[i][2]
        return None

    def advance(self, run: LiveRun) -> None:
        self.load({run.contact_id})
        facts = self.facts.get(run.contact_id)
        if facts is None:
            return  # the contact is gone (its runs go with it)
        automation = self.automation(run.automation_id, run.version)
        state = RunState(
            run.id or 0, run.contact_id, run.node or automation.start, run.state, run.steps,
            run.entered_at, run.trigger, self.ctx.winners.get(run.automation_id, {}),
        )  # fmt: skip
        self.running = run
        start = self._position()
        self.writer.request_id = run.request_id or self.request_id
        try:
            result = advance(automation, state, facts, self.now, self.evaluator, self.rules)
            for step in result.logged:
                self.step(run, step.node, step.outcome, step.reason)
            for done in result.effects:
                effects.carry_out(self, run, automation, done)
        finally:
            self.running = None
            self.writer.request_id = self.request_id
            self.origins.append((start, self._position(), run))
        run.node, run.state, run.steps, run.wake_at = (
            result.node, result.state, result.steps, result.wake_at,
        )  # fmt: skip
        self.touch(run)
        if result.outcome is not None and run.status == "active":
            self.finish(run, result.outcome)

    def finish(self, run: LiveRun, outcome: str, because: dict[str, Any] | None = None) -> None:
        """A run ended: its event, then the entries queued behind it that may now go in."""
        key = self.rows[run.automation_id].key
        run.finish(outcome, self.now)
        # A run ended by something else (`because`) left early: an exit, as far as history goes.
        name = "automation.exited" if outcome == "exited" or because else "automation.completed"
        self.record(
            run.contact_id,
            name,
            {"automation": key, "outcome": outcome, **(because or {})},
            request_id=run.request_id,
        )
        runs = self.inside[run.contact_id]
        runs[:] = [r for r in runs if r is not run]
        self.touch(run)
        # Those of a priority group one at a time, the highest level first.
        queued = sorted(
            (r for r in runs if r.status == "queued"),
            key=lambda r: (-self.automation(r.automation_id, r.version).level, r.id or 0),
        )
        for waiting in queued:
            automation = self.automation(waiting.automation_id, waiting.version)
            if releasable(automation, id(waiting), self.refs(run.contact_id)):
                waiting.status, waiting.state, waiting.entered_at = "active", {}, self.now
                waiting.wake_at = self.now
                self.touch(waiting)
                self.plan(waiting, "released")

    def touch(self, run: LiveRun) -> None:
        run.changed = True
        self.touched.setdefault(id(run), run)

    # --- logging -------------------------------------------------------------------------------

    def step(
        self,
        run: LiveRun | None,
        node: str,
        outcome: str,
        reason: dict[str, Any],
        *,
        automation: tuple[int, int, int] | None = None,  # (id, version, contact) without a run
    ) -> None:
        automation_id, version, contact_id = (
            (run.automation_id, run.version, run.contact_id) if run is not None else automation
        )  # type: ignore[misc]
        row = {
            "workspace_id": self.workspace.id,
            "contact_id": contact_id,
            "automation_id": automation_id,
            "version": version,
            "node": node,
            "outcome": outcome,
            "reason": reason,
            "at": self.now,
        }
        self.steps.append((run, row))

    def record(
        self,
        contact_id: int,
        name: str,
        properties: dict[str, Any],
        *,
        request_id: str | None = None,  # the run's, when it is not the one advancing
    ) -> None:
        writer = self.writer
        previous = writer.request_id
        writer.request_id = request_id or previous
        try:
            writer.record(writer.by_id(contact_id), name, properties)
        finally:
            writer.request_id = previous

    def flush(self) -> None:
        """Write what the tick did: contacts and events, runs, steps, messages."""
        writes.flush(self)
