"""The virtual clock: the log's events, the runs' timers and the outbox's deliveries, in time
order, each handled at its own moment by the engine's code (`Engine.react`, the Tick's `settle`)
and the send policy's (`policies.decide`), as a worker that never falls behind would.

At one moment, like the live loop: the events received then (one batch), then the events those
steps recorded (they can trigger other automations), then the runs due, again until nothing
moves; then the messages due go through the send policy.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from conveyor.domain.policies import CAPPED, Decision, Policy, Sent, decide
from conveyor.services.policies import outgoing
from conveyor.services.simulate.world import SimTick
from conveyor.store.records import EventRecord

if TYPE_CHECKING:
    from conveyor.services.engine import Engine

MAX_ROUNDS = 10_000  # per moment, as the live engine's `run_until_idle`


@dataclass
class Message:
    """One simulated outbox row, and what the send policy made of it."""

    seq: int
    contact_id: int
    automation: str
    node: str
    channel: str
    template: str | None
    message_class: str
    priority: int
    config: dict[str, Any]
    created_at: datetime
    send_after: datetime
    status: str = "pending"  # pending | sent | skipped
    sent_at: datetime | None = None
    decisions: list[tuple[datetime, Decision]] = field(default_factory=list)


class Outbox:
    """Delivery, minus the provider: due messages in the order delivery takes them, each through
    the same policy decision; a deferred message comes back when the policy said."""

    def __init__(
        self,
        policy_for: Callable[[int], Policy],
        timezone_for: Callable[[int], str],
        history: dict[int, list[Sent]],
        later: dict[int, list[tuple[Sent, str]]],
    ) -> None:
        self.policy_for = policy_for
        self.timezone_for = timezone_for
        self.history = history  # sends the caps count, by contact (before the start, then ours)
        self.later = later  # others' real sends in the period, latest first
        self.senders: dict[int, list[tuple[datetime, str]]] = {}  # (sent at, automation)
        self.queue: list[tuple[datetime, int, Message]] = []
        self._seq = 0

    def add(self, message: Message) -> None:
        heapq.heappush(self.queue, (message.send_after, message.seq, message))

    def next_due(self) -> datetime | None:
        return self.queue[0][0] if self.queue else None

    def deliver(self, now: datetime) -> list[Message]:
        """The messages due at `now`, decided; returns them (sent, deferred or skipped)."""
        due = []
        while self.queue and self.queue[0][0] <= now:
            due.append(heapq.heappop(self.queue)[2])
        due.sort(key=lambda m: (-m.priority, m.created_at, m.seq))
        for message in due:
            if message.message_class != "marketing" or message.channel not in CAPPED:
                message.status, message.sent_at = "sent", now
                continue
            history = self.history.setdefault(message.contact_id, [])
            later = self.later.get(message.contact_id)
            while later and later[-1][0].at <= now:
                sent, automation = later.pop()
                history.append(sent)
                self.senders.setdefault(message.contact_id, []).append((sent.at, automation))
            decision = decide(
                outgoing(
                    message.channel,
                    message.template,
                    message.message_class,
                    message.config,
                    message.created_at,
                ),
                history,
                self.policy_for(message.contact_id),
                now,
                self.timezone_for(message.contact_id),
            )
            message.decisions.append((now, decision))
            if decision.action == "send":
                history.append(Sent(message.channel, message.template, now))
                self.senders.setdefault(message.contact_id, []).append((now, message.automation))
                message.status, message.sent_at = "sent", now
            elif decision.action == "skip":
                message.status = "skipped"
            else:
                message.send_after = decision.until or now
                self.add(message)
        return due


class Replay:
    def __init__(
        self,
        engine: Engine,
        tick: SimTick,
        outbox: Outbox,
        on_moment: Callable[[datetime, list[Any], list[Any], list[Message]], None],
        *,
        batch: int = 1000,
    ) -> None:
        self.engine = engine
        self.tick = tick
        self.outbox = outbox
        self.on_moment = on_moment  # (now, the tick's flushes, events recorded, messages decided)
        self.batch = batch
        self.now = tick.start
        self._seq = 0

    def run(self, chunks: Iterable[list[EventRecord]], end: datetime) -> None:
        """Every chunk of the log in order, then the clock on to `end` (exclusive)."""
        pending: list[EventRecord] = []
        first = 0
        for chunk in chunks:
            self.tick.preload(chunk)
            for event in chunk:
                at = max(event.received_at, self.now)
                # A moment's events go in batches of ids (not of counts): a contact's events
                # batch the same way whether the replay has everyone or a part of them.
                if pending and (at != self.now or event.id // self.batch != first):
                    self.moment(self.now, pending)
                    pending = []
                if not pending:
                    self.until(at)
                    self.now = at
                    first = event.id // self.batch
                pending.append(event)
        if pending:
            self.moment(self.now, pending)
        self.until(end)

    def until(self, moment: datetime) -> None:
        """Timers and deliveries due before `moment`, each at its own time."""
        while True:
            times = [t for t in (self.tick.next_timer(), self.outbox.next_due()) if t is not None]
            if not times or min(times) >= moment:
                return
            self.now = max(self.now, min(times))
            self.moment(self.now, [])

    def moment(self, now: datetime, events: list[EventRecord]) -> None:
        tick = self.tick
        tick.move(now)
        mine = [e for e in events if tick.replayable(e)]
        for event in mine:
            tick.replayed(event)
        batch: list[Any] = mine
        records: list[Any] = []
        for _ in range(MAX_ROUNDS):  # as `run_until_idle`: the log, then the due runs, again
            if batch:
                self.engine.react(tick, batch)
            due = tick.due(now)
            if due:
                tick.load({run.contact_id for run in due})
                for run in due:
                    tick.plan(run)
                tick.settle()
                tick.flush()
            fresh = [r for r in tick.recorded_events if r[0]]
            records += fresh
            batch = [self._feedback(c, n, p) for c, n, p in fresh]
            tick.recorded_events = []
            if not batch and not due:
                break
        else:
            raise RuntimeError("the simulation did not settle")
        flushes, tick.flushed = tick.flushed, []
        for _, messages, _ in flushes:
            for run, _step, row in messages:
                self.outbox.add(self._message(run, row))
        self.on_moment(now, flushes, records, self.outbox.deliver(now))

    def _feedback(self, contact_id: int, name: str, properties: dict[str, Any]) -> EventRecord:
        """An event a step recorded, as the next pass of the log would read it."""
        now = self.tick.now
        context = {"source": "automation"}
        return EventRecord(0, 0, contact_id, "system", name, properties, context, None, now, now)

    def _message(self, run: Any, row: dict[str, Any]) -> Message:
        self._seq += 1
        return Message(
            self._seq,
            row["contact_id"],
            self.tick.rows[run.automation_id].key,
            row["node"],
            row["channel"],
            row["template"],
            row["message_class"],
            row.get("priority") or 0,
            (row.get("payload") or {}).get("config") or {},
            row["created_at"],
            row["send_after"],
        )
