"""The simulator's world: the engine's own Tick, over contacts and runs held in memory.

`SimTick` is the live `Tick` with its I/O swapped and nothing else: contacts are read once, as
they were when the replay starts (the log's changes since then undone), and kept; entries, runs
and the events steps record stay in memory; `flush` hands what a moment produced to the replay
instead of writing it. Entering, advancing, waking, queues and preemption are the Tick's code.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from conveyor.domain.contacts import SystemEvent
from conveyor.domain.evaluation import EventFact, RunFact, Snapshot
from conveyor.domain.fields import STANDARD_FIELDS
from conveyor.domain.policies import Sent
from conveyor.services import snapshots
from conveyor.services.conditions import ConditionContext
from conveyor.services.contact_writer import ContactState, ContactWriter
from conveyor.services.engine.runs import LiveRun
from conveyor.services.engine.tick import Tick
from conveyor.store.records import EventRecord
from conveyor.store.store import Tx

if TYPE_CHECKING:
    from conveyor.services.engine import Engine

# The log's record of every change to a contact: what a replay undoes and redoes.
CHANGES = frozenset(
    {
        SystemEvent.FIELD_CHANGED,
        SystemEvent.TAG_ADDED,
        SystemEvent.TAG_REMOVED,
        SystemEvent.LIST_SUBSCRIBED,
        SystemEvent.LIST_UNSUBSCRIBED,
        SystemEvent.LIST_CONFIRMATION_REQUESTED,
        SystemEvent.SCORE_CHANGED,
    }
)


MEMBERSHIP = frozenset({"automation.entered", "automation.completed", "automation.exited"})


@dataclass(frozen=True)
class SimRow:
    """An automation as the Tick's catalog lists it: a stored one, or the draft (not stored)."""

    id: int
    key: str
    version: int
    status: str = "active"


class SimWriter(ContactWriter):
    """A ContactWriter that keeps its contacts in memory and never writes: the replay takes
    the events each moment recorded instead of flushing them."""

    def take(self) -> list[tuple[int | None, str, dict[str, Any]]]:
        out = self.recorded(0)
        self._events = []
        return out

    def flush(self) -> None:
        raise AssertionError("a simulation writes nothing")


def change(
    snap: Snapshot,
    state: ContactState | None,
    event: EventRecord,
    lists: dict[str, int],
    timezone: str,
    *,
    undo: bool = False,
) -> None:
    """Carry a logged change to a contact's facts (and its writer state) forward, or back."""
    name, props = event.name, event.properties or {}
    if name in (SystemEvent.TAG_ADDED, SystemEvent.TAG_REMOVED):
        tag = props.get("tag")
        add = (name == SystemEvent.TAG_ADDED) != undo
        for tags in (snap.tags, state.tags if state is not None else None):
            if tags is not None:
                tags.add(tag) if add else tags.discard(tag)
    elif name == SystemEvent.FIELD_CHANGED:
        key, value = props.get("field"), props.get("old" if undo else "new")
        if key in STANDARD_FIELDS:
            snap.standard[key] = value
            if state is not None:
                state.standard[key] = value
            if key == "timezone":
                snap.timezone = value or timezone
            return
        for fields in (snap.fields, state.fields if state is not None else None):
            if fields is not None:
                fields.pop(key, None) if value is None else fields.__setitem__(key, value)
    elif name == SystemEvent.SCORE_CHANGED:
        snap.score = int(props.get("old" if undo else "new") or 0)
        if state is not None:
            state.score = snap.score
    elif name in CHANGES:  # a subscription
        key, status = props.get("list"), props.get("old_status" if undo else "status")
        subs = state.subscriptions if state is not None else None
        if status is None:
            snap.lists.pop(key, None)
            if subs is not None and key in lists:
                subs.pop(lists[key], None)
        else:
            snap.lists[key] = status
            if subs is not None and key in lists:
                subs[lists[key]] = status


def witness(snap: Snapshot, event: EventRecord, names: set[str]) -> None:
    """What a contact's facts learn from a replayed event, as a fresh read would show it."""
    if event.name in names:
        snap.events.append(
            EventFact(event.name, event.timestamp, event.properties or {}, event.kind)
        )
    key = (event.properties or {}).get("automation")
    if event.name == "automation.entered" and key:
        snap.runs.append(RunFact(key, event.received_at))
    elif event.name in ("automation.completed", "automation.exited") and key:
        snap.runs[:] = [r for r in snap.runs if r.automation != key]


class SimTick(Tick):
    """One tick for the whole replay: `now` moves; contacts, runs and entries stay."""

    def __init__(
        self,
        engine: Engine,
        tx: Tx,
        ctx: ConditionContext,
        start: datetime,
        start_id: int,
        *,
        replayable: Callable[[EventRecord], bool],
        real_ids: dict[int, int],  # simulated automation id → its stored id (for history)
        admit: Callable[[int, Snapshot], bool] | None = None,
        lookback: int = 0,
    ) -> None:
        super().__init__(engine, tx, ctx, start)
        self.writer = SimWriter(
            tx, ctx.workspace, start, source="automation", catalog=self.writer.catalog
        )
        self.writer.observer = self.observed
        self.start, self.start_id, self.position = start, start_id, start_id
        self.replayable = replayable
        self.real_ids = real_ids
        self.admit = admit
        self.lookback = lookback
        self.keys = {row.key for row in self.rows.values()}
        self.excluded: set[int] = set()
        self.sent: dict[int, list[Sent]] = {}  # marketing sends before the start, by contact
        # Sends of automations not simulated, in the period: they count as their moment comes
        # (latest first, so the next one is popped off the end).
        self.later: dict[int, list[tuple[Sent, str]]] = {}
        self.overrides: dict[int, Any] = {}  # contacts' own send policies
        self.synthetic: dict[int, tuple[Any, set[str], dict[int, str]]] = {}
        self.timers: list[tuple[datetime, int, LiveRun]] = []
        self.recorded_events: list[tuple[int | None, str, dict[str, Any]]] = []
        self.flushed: list[Any] = []  # (steps, messages, runs finished) of each flush
        self._ids = 0

    def move(self, now: datetime) -> None:
        self.now = self.writer.now = now

    # --- loading: once per contact, as it was at the start plus what was replayed since ----

    def load(self, contact_ids: set[int]) -> None:
        wanted = {c for c in contact_ids if c not in self.inside and c not in self.excluded}
        if not wanted:  # the usual case: every step of a run asks for its contact
            return
        made = [c for c in wanted if c in self.synthetic]
        for contact_id in made:  # a contact made up for `try`: as given, with no history
            row, tags, subs = self.synthetic[contact_id]
            self.writer.adopt([row], {contact_id: tags}, {contact_id: subs})
            self.facts[contact_id] = snapshots.snapshot(self.ctx, row, tags, subs, [], [])
            self.inside[contact_id] = []
        wanted -= set(made)
        if not wanted:
            return
        loaded = snapshots.load(self.tx, self.ctx, wanted, self.names, up_to_id=self.start_id)
        self.writer.adopt(loaded.rows, loaded.tags, loaded.subscriptions)
        self.excluded |= wanted - set(loaded.snapshots)
        # Every change since the start (to undo from how the contacts are now); the events the
        # conditions count only up to where the replay stands (the rest it will replay itself).
        changes = self.tx.events.of_contacts(loaded.snapshots, CHANGES, after_id=self.start_id)
        seen = (self.names | MEMBERSHIP) - CHANGES
        later = [e for e in changes if e.id <= self.position]
        if seen and self.position > self.start_id:
            later += self.tx.events.of_contacts(
                loaded.snapshots, seen, after_id=self.start_id, up_to_id=self.position
            )
            later.sort(key=lambda e: e.id)
        facts = loaded.snapshots
        for event in reversed(changes):  # back to the start …
            self._change(facts[event.contact_id or 0], event, undo=True)
        for snap in facts.values():  # (runs of the simulated automations are ours to make)
            snap.runs = [
                r for r in snap.runs if r.entered_at < self.start and r.automation not in self.keys
            ]
        if self.admit is not None:  # a segment or a sample: who was in it at the start
            for contact_id in [c for c, snap in facts.items() if not self.admit(c, snap)]:
                self.excluded.add(contact_id)
                del facts[contact_id]
        for event in later:  # … and forward to where the replay stands
            if event.contact_id in facts and event.id <= self.position and self.replayable(event):
                self._change(facts[event.contact_id], event)
                witness(facts[event.contact_id], event, self.names)
        for contact_id, snap in facts.items():
            self.facts[contact_id] = snap
            self.inside[contact_id] = []
        self._history(list(facts))

    def preload(self, events: list[EventRecord]) -> None:
        """Load at once the contacts a chunk of the log will have the engine load one moment
        at a time (those of its events that trigger or may wake something): a few large reads
        instead of many small ones. The same facts either way — a contact is brought to where
        the replay stands, and the events replayed after that reach it as they come."""
        new = [
            e
            for e in events
            if e.contact_id is not None
            and e.contact_id not in self.inside
            and e.contact_id not in self.excluded
            and self.replayable(e)
        ]
        if new:
            self.load({e.contact_id for e in self.engine.relevant(self, new)})  # type: ignore[misc]

    def _history(self, contact_ids: list[int]) -> None:
        """What entry rules and caps count from before the start: entries, sends."""
        for contact_id in contact_ids:
            for automation_id in self.rows:
                self.entries[(contact_id, automation_id)] = []
        self.overrides.update(self.tx.messages.contact_policies(contact_ids))
        by_real = {real: sim for sim, real in self.real_ids.items()}
        for row in self.tx.automations.entries_of(contact_ids, list(by_real)):
            if row.entered_at < self.start:
                self.entries[(row.contact_id, by_real[row.automation_id])].append(row.entered_at)
        if self.lookback:
            ours = set(self.real_ids.values())
            for contact_id in contact_ids:
                self.sent[contact_id], self.later[contact_id] = [], []
            since = self.start - timedelta(seconds=self.lookback)
            for s in self.tx.messages.recent_sends(contact_ids, since, ()):
                sent = Sent(s.channel, s.template, s.sent_at)
                if s.sent_at < self.start:
                    self.sent[s.contact_id].append(sent)
                elif s.automation_id not in ours:  # what others really sent in the period
                    key = self.ctx.automations.get(s.automation_id or 0, "")
                    self.later[s.contact_id].append((sent, key))
            for contact_id in contact_ids:
                self.later[contact_id].sort(key=lambda pair: pair[0].at, reverse=True)

    def _change(self, snap: Snapshot, event: EventRecord, *, undo: bool = False) -> None:
        state = self.writer.by_id(event.contact_id) if event.contact_id else None
        change(snap, state, event, self.ctx.lists, self.ctx.timezone, undo=undo)

    def replayed(self, event: EventRecord) -> None:
        """A logged event the replay reached: the contact's facts learn it (if it is loaded)."""
        self.position = event.id
        snap = self.facts.get(event.contact_id or 0)
        if snap is not None:
            self._change(snap, event)
            witness(snap, event, self.names)

    def entered(self, contact_id: int, automation_id: int) -> list[datetime]:
        return self.entries.setdefault((contact_id, automation_id), [])

    # --- what a moment produced goes to the replay, not to the database ---------------------

    def flush(self) -> None:
        self.recorded_events += self.writer.take()
        self.origins, self.settled = [], 0
        touched = list(self.touched.values())
        finished = []
        for run in touched:
            if run.new:
                self._ids += 1
                run.id, run.new = self._ids, False
                self.known[run.id] = run
            run.changed, run.advanced = False, 0
            if run.status == "finished":
                self.known.pop(run.id, None)  # type: ignore[arg-type]
                finished.append(run)
            elif run.status == "active" and run.wake_at is not None:
                heapq.heappush(self.timers, (run.wake_at, run.id, run))  # type: ignore[arg-type]
        self.flushed.append((self.steps, self.messages, finished))
        self.touched, self.steps, self.messages = {}, [], []

    def due(self, now: datetime) -> list[LiveRun]:
        """Runs whose timer is due at `now`, as `claim_due` orders them (stale timers dropped)."""
        out: dict[int, LiveRun] = {}
        while self.timers and self.timers[0][0] <= now:
            wake_at, run_id, run = heapq.heappop(self.timers)
            if run.status == "active" and run.wake_at == wake_at:
                out.setdefault(run_id, run)
        return list(out.values())

    def next_timer(self) -> datetime | None:
        while self.timers:
            wake_at, _, run = self.timers[0]
            if run.status == "active" and run.wake_at == wake_at:
                return wake_at
            heapq.heappop(self.timers)
        return None


def contacts_of(events: Iterable[EventRecord]) -> set[int]:
    return {e.contact_id for e in events if e.contact_id is not None}
