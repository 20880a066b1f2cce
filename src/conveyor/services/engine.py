"""The engine: enrolls contacts when their events match triggers, and moves runs along.

`dispatch` follows the event log (its own cursor): matching events enroll contacts under the
entry rules, and events that a waiting run, goal or exit condition depends on wake exactly the
runs of that contact that depend on them. `execute` claims due runs (SKIP LOCKED on PostgreSQL)
and executes node after node until a wait or the end. Each call is one transaction: run state,
step log, contact changes with their system events, and outbox rows commit together, so a
killed worker loses nothing and repeats no internal effect.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.clock import Clock
from conveyor.domain.automations import Automation, Priority
from conveyor.domain.conditions import All, Condition, FieldIs, Not
from conveyor.domain.contacts import SubscriptionStatus
from conveyor.domain.engine import (
    ContactChange,
    EndOther,
    Enroll,
    RunView,
    Send,
    execute,
    goal_ahead,
)
from conveyor.domain.errors import Conflict, InvalidInput, NotFound
from conveyor.domain.evaluation import Evaluator, Snapshot, event_names, property_matches
from conveyor.domain.fields import FieldType
from conveyor.domain.workspaces import Workspace
from conveyor.services.automations import parse_definition
from conveyor.services.contact_writer import ContactWriter
from conveyor.services.segments import ConditionContext, Segments, dependencies
from conveyor.services.workspaces import workspace_from_row
from conveyor.store.store import Store, Tx

LOG_CONSUMER = "engine"
MAX_STEPS_PER_TICK = 100


class Engine:
    def __init__(self, store: Store, clock: Clock, segments: Segments) -> None:
        self.store = store
        self.clock = clock
        self.segments = segments
        self._parsed: dict[tuple[int, int], Automation] = {}

    def dispatch(self, limit: int = 1000) -> int:
        """Match new events against triggers and wake the runs they concern; how many events."""
        with self.store.read() as tx:
            if not tx.segments.behind(LOG_CONSUMER):
                return 0
        high = self.store.db.committed_high_water()
        return self.store.transact(lambda tx: self._dispatch(tx, high, limit))

    def execute(self, limit: int = 200) -> int:
        """Advance up to `limit` due runs; how many were advanced."""
        return self.store.transact(lambda tx: self._execute(tx, limit))

    def run_until_idle(self, max_rounds: int = 10_000) -> None:
        """Dispatch and execute until nothing is left to do now (for tests and the CLI)."""
        self.sweep_dates()
        for _ in range(max_rounds):
            busy = self.segments.process_log() + self.dispatch() + self.execute()
            if not busy:
                return
        raise RuntimeError("the engine did not settle")

    def sweep_dates(self) -> int:
        """Enroll contacts whose date trigger falls today (their local day, at their local time);
        the one kind of trigger that looks back: a contact whose day it is enters even if the
        automation was activated later that day. Each occurrence enrolls once."""
        with self.store.read() as tx:
            workspaces = [workspace_from_row(row) for row in tx.workspaces.all()]
        return sum(
            self.store.transact(lambda tx, ws=ws: self._sweep_dates(tx, ws)) for ws in workspaces
        )

    def _sweep_dates(self, tx: Tx, workspace: Workspace) -> int:
        now = self.clock.now()
        tick = _Tick(self, tx, workspace, now)
        entered = 0
        for row in tx.automations.active(workspace.id):
            automation = tick.automation(row.id, row.version)
            for trigger in automation.triggers:
                if trigger.date is None or trigger.date.field not in tick.ctx.fields:
                    continue
                condition = _falls_today(trigger.date)
                stmt = tick.ctx.sql(now).members_query(condition, after_id=None, limit=None)
                people = list(tx.conn.execute(stmt))
                recent = tx.automations.recent_triggers(
                    row.id, [p.id for p in people], now - timedelta(days=2)
                )
                for person in people:
                    local = now.astimezone(ZoneInfo(person.timezone or tick.ctx.timezone))
                    if local.strftime("%H:%M") < trigger.date.at:
                        continue
                    occurrence = {"date": local.date().isoformat(), "field": trigger.date.field}
                    if (person.id, occurrence["date"]) in recent:
                        continue
                    recent.add((person.id, occurrence["date"]))
                    entered += tick.enroll(row, person.id, occurrence, source="date") == "entered"
        tick.flush()
        return entered

    def enroll(self, workspace: Workspace, key: str, contact_id: int) -> str:
        """Enroll a contact by hand (or API); entry rules still apply. Says what happened."""

        def work(tx: Tx) -> str:
            tick = _Tick(self, tx, workspace, self.clock.now())
            row = tx.automations.by_key(workspace.id, key)
            if row is None:
                raise NotFound(f"no automation '{key}' in this workspace")
            if row.status != "active":
                raise Conflict(f"automation '{key}' is {row.status}; activate it first")
            if tick.writer.by_id(contact_id) is None:
                raise NotFound(f"no contact {contact_id} in this workspace")
            outcome = tick.enroll(row, contact_id, {}, source="manual")
            tick.flush()
            return outcome

        return self.store.transact(work)

    def parsed(self, tx: Tx, workspace: Workspace, row: Any, version: int) -> Automation:
        key = (row.id, version)
        if key not in self._parsed:
            definition = tx.automations.definition(row.id, version)
            self._parsed[key] = parse_definition(tx, workspace, definition, key=row.key)
        return self._parsed[key]

    def _dispatch(self, tx: Tx, high: int, limit: int) -> int:
        position = tx.segments.cursor(LOG_CONSUMER)
        if position is None:
            return 0
        batch = tx.segments.events_after(position, high, limit)
        if not batch:
            return 0
        now = self.clock.now()
        by_workspace: dict[int, list[Any]] = defaultdict(list)
        for row in batch:
            if row.contact_id is not None:
                by_workspace[row.workspace_id].append(row)
        if by_workspace:
            workspaces = {row.id: row for row in tx.workspaces.all()}
            for workspace_id, rows in by_workspace.items():
                tick = _Tick(self, tx, workspace_from_row(workspaces[workspace_id]), now)
                tick.on_events(rows)
                tick.flush()
            tx.automations.add_messages(_confirmation_requests(tx, batch, now))
        tx.segments.move_cursor(LOG_CONSUMER, batch[-1].id)
        return len(batch)

    def _execute(self, tx: Tx, limit: int) -> int:
        now = self.clock.now()
        claimed = tx.automations.claim_due(now, limit)
        by_workspace: dict[int, list[Any]] = defaultdict(list)
        for run in claimed:
            by_workspace[run.workspace_id].append(run)
        if by_workspace:
            workspaces = {row.id: row for row in tx.workspaces.all()}
            for workspace_id, runs in by_workspace.items():
                tick = _Tick(self, tx, workspace_from_row(workspaces[workspace_id]), now)
                tick.advance(runs)
                tick.flush()
        return len(claimed)


class _Tick:
    """One transaction's worth of engine work in one workspace."""

    def __init__(self, engine: Engine, tx: Tx, workspace: Workspace, now: datetime) -> None:
        self.engine = engine
        self.tx = tx
        self.workspace = workspace
        self.now = now
        self.ctx = ConditionContext(tx, workspace)
        self.evaluator = Evaluator(self.ctx.conditions)
        self.writer = ContactWriter(tx, workspace, now, source="automation")
        self.automations = {row.id: row for row in tx.automations.all(workspace.id)}
        self.by_key = {row.key: row for row in self.automations.values()}
        self.snaps: dict[int, Snapshot] = {}
        self.new_runs: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self._runs_of: dict[int, list[dict[str, Any]]] | None = None
        self._new_entries: list[dict[str, Any]] = []  # runs_of entries of new_runs, in order
        self.ended: set[int] = set()  # runs preempted in this tick
        self._advancing: int | None = None

    # --- loading -----------------------------------------------------------------------------

    def automation(self, automation_id: int, version: int) -> Automation:
        return self.engine.parsed(self.tx, self.workspace, self.automations[automation_id], version)

    def load(self, contact_ids: set[int], conditions: list[Condition]) -> None:
        names: set[str] = set()
        for condition in conditions:
            names |= event_names(condition, self.ctx.conditions)
        wanted = [c for c in contact_ids if c not in self.snaps]
        if wanted:
            self.snaps.update(self.engine.segments.snapshots(self.tx, self.ctx, wanted, names))
            self.writer.preload(ids=set(wanted))

    def runs_of(self, contact_id: int) -> list[dict[str, Any]]:
        """The contact's unfinished runs, including those created in this tick."""
        if self._runs_of is None or contact_id not in self._runs_of:
            self.prefetch_runs({contact_id})
        assert self._runs_of is not None
        return self._runs_of[contact_id]

    def prefetch_runs(self, contact_ids: set[int]) -> list[Any]:
        """Unfinished runs of many contacts in one query (not one per contact); returned too."""
        if self._runs_of is None:
            self._runs_of = defaultdict(list)
        wanted = {c for c in contact_ids if c not in self._runs_of}
        rows = self.tx.automations.of_contacts(wanted) if wanted else []
        for contact_id in wanted:
            self._runs_of[contact_id] = []
        for r in rows:
            self._runs_of[r.contact_id].append(
                {
                    "id": r.id,
                    "automation_id": r.automation_id,
                    "version": r.version,
                    "status": r.status,
                    "entered_at": r.entered_at,
                }
            )
        return rows

    # --- events: triggers and wake-ups -----------------------------------------------------------

    def on_events(self, rows: list[Any]) -> None:
        active = [self.automations[r.id] for r in self.tx.automations.active(self.workspace.id)]
        triggers = [(row, self.automation(row.id, row.version)) for row in active]
        # One event, two automations of a priority group: the higher level gets in first.
        triggers.sort(key=lambda t: -_level(t[1]))
        contact_ids = {r.contact_id for r in rows}
        # Each event looks only at its own contact's waiting runs (a scan of every waiting run
        # per event made a batch's cost grow with its square).
        waiting_of: dict[int, list[Any]] = defaultdict(list)
        for run in self.prefetch_runs(contact_ids):
            if run.status == "active":
                waiting_of[run.contact_id].append(run)
        conditions = [c for _, a in triggers for c in _entry_conditions(a)]
        self.load(contact_ids, conditions)
        woken: set[int] = set()
        for event in rows:
            props = event.properties or {}
            if event.contact_id not in self.snaps:
                continue
            for row, automation in triggers:
                if any(_matches(t, event.name, props) for t in automation.triggers):
                    trigger = props if event.kind != "system" else {**props, "event": event.name}
                    self.enroll(row, event.contact_id, trigger, source=event.name)
            for run in waiting_of.get(event.contact_id, ()):
                if run.id not in woken:
                    automation = self.automation(run.automation_id, run.version)
                    if any(
                        dependencies(c).touched_by(event.name, props)
                        for c in _watched(automation, run.node)
                    ):
                        woken.add(run.id)
        self.tx.automations.wake(sorted(woken), self.now)

    def enroll(self, row: Any, contact_id: int, trigger: dict[str, Any], *, source: str) -> str:
        automation = self.automation(row.id, row.version)
        entry = automation.entry
        history = [r for r in self.runs_of(contact_id) if r["automation_id"] == row.id]
        finished = (
            self.tx.automations.history(row.id, contact_id) if entry.repeat != "every_time" else []
        )
        entries = [r["entered_at"] for r in history] + [
            r.entered_at for r in finished if r.status == "finished"
        ]
        if entry.repeat == "once" and entries:
            return "skipped: entered before (once per contact)"
        if history:
            return "skipped: already inside"
        if (
            entry.repeat == "after"
            and entries
            and max(entries) > self.now - timedelta(seconds=entry.after_seconds)
        ):
            return "skipped: entered too recently"
        if (
            entry.max_per_day
            and sum(e > self.now - timedelta(days=1) for e in entries) >= entry.max_per_day
        ):
            return "skipped: daily entry limit"
        self.load({contact_id}, _entry_conditions(automation))
        snap = self.snaps[contact_id]
        if (
            entry.condition is not None
            and not self.evaluator.evaluate(entry.condition, snap, self.now).ok
        ):
            return "skipped: entry condition not met"
        if entry.unless is not None and self.evaluator.evaluate(entry.unless, snap, self.now).ok:
            return "skipped: excluded"
        blockers = {self.by_key[k].id for k in entry.queue_behind if k in self.by_key}
        behind = [r for r in self.runs_of(contact_id) if r["automation_id"] in blockers]
        queued = bool(behind)
        note = {"because": self.automations[behind[0]["automation_id"]].key} if behind else {}
        group = automation.priority
        rivals = self._rivals(row.id, group, contact_id) if group and not queued else []
        if rivals and group is not None:
            # Name the run holding the slot (an active one) rather than one waiting for it.
            first = next((r for r, _ in rivals if r["status"] == "active"), rivals[0][0])
            note = {"because": self.automations[first["automation_id"]].key, "group": group.group}
            inside = f"inside {note['because']} (priority group {group.group})"
            if group.on_conflict == "skip":
                self._event(contact_id, "automation.entry_skipped", {"automation": row.key, **note})
                return f"skipped: {inside}"
            outranks = all(level < group.level for _, level in rivals)
            # The run executing now (the one starting this automation) is not ended under itself.
            running = self._advancing is not None and any(
                r["id"] == self._advancing for r, _ in rivals
            )
            if group.on_conflict == "preempt" and outranks and not running:
                self._preempt(contact_id, [r for r, _ in rivals], row.key, group)
                note = {"preempted": [self.automations[r["automation_id"]].key for r, _ in rivals]}
                note["group"] = group.group
            else:  # queue, or a preempt that does not outrank what the contact is inside
                queued = True
        run = {
            "workspace_id": self.workspace.id,
            "automation_id": row.id,
            "version": row.version,
            "contact_id": contact_id,
            "status": "queued" if queued else "active",
            "node": automation.start,
            "state": {},
            "wake_at": None if queued else self.now,
            "steps": 0,
            "trigger": trigger,
            "outcome": None,
            "entered_at": self.now,
            "finished_at": None,
        }
        self.new_runs.append(run)
        entry_row = {
            "id": None,
            "automation_id": row.id,
            "version": row.version,
            "status": run["status"],
            "entered_at": self.now,
        }
        self._new_entries.append(entry_row)
        self.runs_of(contact_id).append(entry_row)
        state = self.writer.by_id(contact_id)
        self.writer.record(
            state,
            "automation.entered",
            {"automation": row.key, "queued": queued, "via": source, **note},
        )
        if not queued:
            return "entered"
        if "group" in note:
            return f"queued: inside {note['because']} (priority group {note['group']})"
        return f"queued: behind {note['because']}"

    def _rivals(
        self, automation_id: int, group: Priority | None, contact_id: int
    ) -> list[tuple[dict[str, Any], int]]:
        """The contact's unfinished runs (active or queued) of other automations of the
        priority group, each with its automation's level."""
        if group is None:
            return []
        out = []
        for r in self.runs_of(contact_id):
            if r["automation_id"] == automation_id:
                continue
            other = self.automation(r["automation_id"], r["version"]).priority
            if other is not None and other.group == group.group:
                out.append((r, other.level))
        return out

    def _preempt(
        self, contact_id: int, victims: list[dict[str, Any]], newcomer: str, group: Priority
    ) -> None:
        """End the runs a higher-priority newcomer of their group displaces: a step saying
        why, outcome "ended", and an `automation.exited` event naming the newcomer."""
        if any(v["id"] is None for v in victims):
            self._save_new_runs()  # entered earlier in this tick: they need ids for their steps
        rows = {r.id: r for r in self.tx.automations.of_contacts([contact_id])}
        # Mark them all first, so ending one does not release another from the queue.
        self.ended |= {v["id"] for v in victims}
        for victim in victims:
            run = rows.get(victim["id"])
            if run is None:
                continue
            key = self.automations[run.automation_id].key
            pending = next((u for u in reversed(self.updates) if u["run_id"] == run.id), None)
            node, steps = (pending["node"], pending["steps"]) if pending else (run.node, run.steps)
            level = _level(self.automation(run.automation_id, run.version))
            why = (
                f"preempted by {newcomer} (priority group {group.group}: "
                f"level {group.level} > {level})"
            )
            steps = self._step(
                run, node, "ended", {"why": why, "by": newcomer, "group": group.group}, steps
            )
            # Same columns as a pending update of this run, so it is saved after that one.
            self.updates.append(
                {
                    **(pending or {}),
                    "run_id": run.id,
                    "node": node,
                    "state": {},
                    "wake_at": None,
                    "steps": steps,
                    "status": "finished",
                    "outcome": "ended",
                    "finished_at": self.now,
                }
            )
            self._finished(run, key, "ended", {"because": newcomer, "group": group.group})

    # --- runs ----------------------------------------------------------------------------------

    def advance(self, runs: list[Any]) -> None:
        conditions: list[Condition] = []
        for run in runs:
            conditions += _all_conditions(self.automation(run.automation_id, run.version))
        self.load({run.contact_id for run in runs}, conditions)
        self.prefetch_runs({run.contact_id for run in runs})
        for run in runs:
            if run.id in self.ended:
                continue  # preempted earlier in this tick
            self._advancing = run.id
            self._advance(run)
        self._advancing = None

    def _advance(self, run: Any) -> None:
        automation = self.automation(run.automation_id, run.version)
        key = self.automations[run.automation_id].key
        snap = self.snaps.get(run.contact_id)
        if snap is None:
            return  # the contact is gone (its runs go with it)
        snap.entered_at = run.entered_at
        node_id, state, count = run.node, dict(run.state or {}), run.steps
        wake_at: datetime | None = None
        outcome: str | None = None
        for _ in range(MAX_STEPS_PER_TICK):
            if automation.exit_when is not None:
                verdict = self.evaluator.evaluate(automation.exit_when, snap, self.now)
                if verdict.ok:
                    count = self._step(run, node_id, "exited", verdict.as_dict(), count)
                    outcome = "exited"
                    break
            jump = goal_ahead(automation, node_id, snap, self.now, self.evaluator)
            if jump is not None:
                goal, verdict = jump
                count = self._step(run, goal.id, "goal_reached", verdict.as_dict(), count)
                self._event(
                    run.contact_id, "automation.goal_reached", {"automation": key, "goal": goal.id}
                )
                node_id, state = goal.next, {}
                if node_id is None:
                    outcome = "goal_reached"
                    break
                continue
            node = automation.nodes[node_id]
            view = RunView(
                run.id, key, run.contact_id, node_id, state, run.entered_at, run.trigger or {}
            )
            result = execute(node, view, snap, self.now, self.evaluator)
            if result.kind != "wait" or not state:
                count = self._step(run, node_id, result.outcome, result.reason, count)
            if node.type == "goal" and result.outcome in ("goal_reached", "goal_skipped"):
                self._event(
                    run.contact_id,
                    f"automation.{result.outcome}",
                    {"automation": key, "goal": node_id},
                )
            for effect in result.effects:
                self._apply(run, node_id, effect, count, snap)
            if result.kind == "wait":
                state, wake_at = result.state, result.until
                break
            if result.kind == "end":
                outcome = "goal_skipped" if result.outcome == "goal_skipped" else "ended"
                break
            node_id, state = result.next, {}
            if node_id is None:
                outcome = "completed"
                break
        else:
            wake_at = self.now  # a long chain: carry on next tick
        update = {
            "run_id": run.id,
            "node": node_id,
            "state": state,
            "wake_at": wake_at,
            "steps": count,
            "status": "active",
            "outcome": None,
            "finished_at": None,
        }
        if outcome is not None:
            update.update(
                status="finished", outcome=outcome, finished_at=self.now, wake_at=None, state={}
            )
            self._finished(run, key, outcome)
        self.updates.append(update)

    def _step(self, run: Any, node: str, outcome: str, reason: Any, count: int) -> int:
        self.steps.append(
            {
                "workspace_id": self.workspace.id,
                "run_id": run.id,
                "contact_id": run.contact_id,
                "automation_id": run.automation_id,
                "version": run.version,
                "node": node,
                "outcome": outcome,
                "reason": reason if isinstance(reason, dict) else {"why": reason},
                "at": self.now,
            }
        )
        return count + 1

    def _event(self, contact_id: int, name: str, properties: dict[str, Any]) -> None:
        self.writer.record(self.writer.by_id(contact_id), name, properties)

    def _apply(self, run: Any, node_id: str, effect: Any, count: int, snap: Snapshot) -> None:
        if isinstance(effect, Send):
            self.messages.append(
                {
                    "workspace_id": self.workspace.id,
                    "channel": effect.channel,
                    "template": effect.template,
                    "contact_id": run.contact_id,
                    "run_id": run.id,
                    "automation_id": run.automation_id,
                    "version": run.version,
                    "node": node_id,
                    "message_class": effect.message_class,
                    "payload": {"config": effect.config, "trigger": run.trigger},
                    "idempotency_key": f"run:{run.id}:step:{count}",
                    "status": "pending",
                    "created_at": self.now,
                    "send_after": self.now,
                    "priority": _level(self.automation(run.automation_id, run.version)),
                }
            )
        elif isinstance(effect, Enroll):
            row = self.by_key.get(effect.automation)
            if row is not None and row.status == "active":
                self.enroll(
                    row,
                    run.contact_id,
                    run.trigger or {},
                    source=f"automation {self.automations[run.automation_id].key}",
                )
        elif isinstance(effect, EndOther):
            self._end_other(run.contact_id, effect.automation)
        elif isinstance(effect, ContactChange):
            try:
                self._change(run.contact_id, effect)
            except InvalidInput as exc:
                self._step(run, node_id, "failed", {"why": exc.detail}, count)
            self._refresh(run.contact_id, snap)

    def _change(self, contact_id: int, change: ContactChange) -> None:
        writer, state = self.writer, self.writer.by_id(contact_id)
        if state is None:
            return
        if change.action == "add_tag":
            writer.add_tags(state, [change.target])
        elif change.action == "remove_tag":
            writer.remove_tags(state, [change.target])
        elif change.action in ("set_field", "clear_field"):
            value = None if change.action == "clear_field" else change.value
            writer.apply(state, writer.prepare({change.target: value}))
        elif change.action == "increment_field":
            current = state.fields.get(change.target) or 0
            writer.apply(state, writer.prepare({change.target: current + change.value}))
        elif change.action in ("subscribe", "unsubscribe"):
            info = writer.catalog.list_named(change.target, "list")
            status = (
                SubscriptionStatus.SUBSCRIBED
                if change.action == "subscribe"
                else SubscriptionStatus.UNSUBSCRIBED
            )
            writer.set_subscription(state, info, status)
        elif change.action == "adjust_score":
            writer.set_score(state, state.score + int(change.value))

    def _refresh(self, contact_id: int, snap: Snapshot) -> None:
        """Keep the snapshot in step with what this tick changed, for later conditions."""
        state = self.writer.by_id(contact_id)
        if state is None:
            return
        tags, subs = self.writer._relations(state)
        snap.fields = dict(state.fields)
        snap.standard = dict(state.standard)
        snap.score = state.score
        snap.tags = set(tags)
        snap.lists = {self.writer.catalog.lists_by_id[lid].key: str(st) for lid, st in subs.items()}

    def _end_other(self, contact_id: int, key: str) -> None:
        row = self.by_key.get(key)
        if row is None:
            return
        for other in self.tx.automations.of_contacts([contact_id], ("active", "queued")):
            if other.automation_id == row.id:
                self.updates.append(
                    {
                        "run_id": other.id,
                        "node": other.node,
                        "state": {},
                        "wake_at": None,
                        "steps": other.steps,
                        "status": "finished",
                        "outcome": "ended",
                        "finished_at": self.now,
                    }
                )
                self._finished(other, key, "ended")

    def _finished(
        self, run: Any, key: str, outcome: str, because: dict[str, Any] | None = None
    ) -> None:
        # A run ended by something else (`because`) left early: an exit, as far as history goes.
        name = "automation.exited" if outcome == "exited" or because else "automation.completed"
        self._event(
            run.contact_id, name, {"automation": key, "outcome": outcome, **(because or {})}
        )
        runs = self.runs_of(run.contact_id)
        runs[:] = [r for r in runs if r["id"] != run.id]
        known = {r["id"]: r for r in runs}
        waiting = []
        for q in self.tx.automations.of_contacts([run.contact_id], ("queued",)):
            if q.id not in known and q.id not in self.ended:
                known[q.id] = {"id": q.id, "automation_id": q.automation_id, "version": q.version}
                known[q.id].update(status="queued", entered_at=q.entered_at)
                runs.append(known[q.id])
            if q.id not in self.ended and known[q.id]["status"] == "queued":
                waiting.append(q)
        # Entries queued behind this automation go in once nothing blocks them any more; those
        # of a priority group one at a time, the highest level first.
        waiting.sort(key=lambda q: (-_level(self.automation(q.automation_id, q.version)), q.id))
        for queued in waiting:
            automation = self.automation(queued.automation_id, queued.version)
            blockers = {
                self.by_key[k].id for k in automation.entry.queue_behind if k in self.by_key
            }
            held = any(
                r["status"] == "active" and r["id"] != queued.id
                for r, _ in self._rivals(queued.automation_id, automation.priority, run.contact_id)
            )
            if not held and not any(
                r["automation_id"] in blockers for r in runs if r["id"] != queued.id
            ):
                known[queued.id]["status"] = "active"
                self.updates.append(
                    {
                        "run_id": queued.id,
                        "node": queued.node,
                        "state": {},
                        "wake_at": self.now,
                        "steps": queued.steps,
                        "status": "active",
                        "outcome": None,
                        "finished_at": None,
                        "entered_at": self.now,
                    }
                )

    def _save_new_runs(self) -> None:
        ids = self.tx.automations.add_runs(self.new_runs)
        for entry, run_id in zip(self._new_entries, ids, strict=True):
            entry["id"] = run_id
        self.new_runs, self._new_entries = [], []

    def flush(self) -> None:
        self.writer.flush()
        self._save_new_runs()
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for update in self.updates:
            by_columns[tuple(sorted(update))].append(update)
        for rows in by_columns.values():
            self.tx.automations.save_runs(rows)
        self.tx.automations.add_steps(self.steps)
        self.tx.automations.add_messages(self.messages)


def _confirmation_requests(tx: Tx, events: list[Any], now: datetime) -> list[dict[str, Any]]:
    """The double opt-in email for each `list.confirmation_requested`: transactional (it goes
    to people not yet subscribed), once per request (keyed by the event)."""
    rows = []
    lists: dict[int, dict[str, Any]] = {}
    for event in events:
        if event.name != "list.confirmation_requested" or event.contact_id is None:
            continue
        if event.workspace_id not in lists:
            lists[event.workspace_id] = {r.key: r for r in tx.catalog.lists(event.workspace_id)}
        found = lists[event.workspace_id].get((event.properties or {}).get("list"))
        if found is None:
            continue
        rows.append(
            {
                "workspace_id": event.workspace_id,
                "channel": "email",
                "template": f"confirm-{found.key}",
                "contact_id": event.contact_id,
                "run_id": None,
                "node": None,
                "message_class": "transactional",
                "payload": {"config": {"confirm_list": found.id}, "trigger": {"list": found.key}},
                "idempotency_key": f"confirm:{event.id}",
                "status": "pending",
                "created_at": now,
                "send_after": now,
            }
        )
    return rows


def _matches(trigger: Any, name: str, properties: dict[str, Any]) -> bool:
    if trigger.date is not None or trigger.name != name:
        return False
    if trigger.url_pattern is not None:
        url = properties.get("url")
        if not isinstance(url, str) or not fnmatch.fnmatchcase(url, trigger.url_pattern):
            return False
    return all(property_matches(f, properties) for f in trigger.where)


def _falls_today(trigger: Any) -> Condition:
    """Contacts whose date field plus the offset is their local today (every year, if yearly)."""

    def field(op: str, value: Any) -> FieldIs:
        return FieldIs(trigger.field, FieldType.DATE, op, value)

    k = trigger.offset_days
    if trigger.yearly:
        return field("anniversary", -k)
    if k == 0:
        return field("today", None)
    # The date is exactly |k| days ago (or ahead): within |k| days but not within |k| - 1.
    op = "within_last" if k > 0 else "within_next"
    return All((field(op, abs(k) * 86400), Not(field(op, (abs(k) - 1) * 86400))))


def _level(automation: Automation) -> int:
    """Its priority level: orders its entries against its group's and its outbox rows."""
    return automation.priority.level if automation.priority is not None else 0


def _entry_conditions(automation: Automation) -> list[Condition]:
    return [c for c in (automation.entry.condition, automation.entry.unless) if c is not None]


def _all_conditions(automation: Automation) -> list[Condition]:
    out = [n.condition for n in automation.nodes.values() if n.condition is not None]
    if automation.exit_when is not None:
        out.append(automation.exit_when)
    return out + _entry_conditions(automation)


def _watched(automation: Automation, node_id: str | None) -> list[Condition]:
    """What can wake a run at this node: its own condition, goals, and the exit condition."""
    out = [g.condition for g in automation.goals() if g.condition is not None]
    if automation.exit_when is not None:
        out.append(automation.exit_when)
    node = automation.nodes.get(node_id) if node_id else None
    if node is not None and node.condition is not None:
        out.append(node.condition)
    return out
