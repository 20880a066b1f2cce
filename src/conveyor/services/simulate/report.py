"""What a simulation tells: counts per automation, day, node, channel and contact, the send
policy's decisions and why, the automations whose messages hold each other back, and the full
path of the contacts asked about. Tallied moment by moment, so memory grows with contacts and
days, not with events."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from conveyor.domain.policies import Decision
from conveyor.services.simulate.replay import Message

_SINCE = re.compile(
    r" since \d{4}-\S+"
)  # "already inside since <moment>": the rule, not the moment
_WHEN = re.compile(r"\s*\(?(next allowed|quiet hours until|send at) [^;)]*\)?")


def rule_of(decision: Decision) -> str:
    """The rule behind a defer or skip, without its moments: `email cap 1 per 16 hours`."""
    reason = decision.reason.split(": ", 1)[-1]
    if reason.startswith("template "):
        return "no repeat of a template"
    rules = [r.strip() for r in _WHEN.sub("", reason).split(";") if r.strip()]
    if "quiet hours until" in reason:
        rules.append("quiet hours")
    if "send at" in reason:
        rules.append("send at a local time")
    return "; ".join(dict.fromkeys(rules)) or reason


def ranked(counts: Counter[Any]) -> list[tuple[Any, int]]:
    """Most first, ties by key: the same order however the counts were gathered."""
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass
class PathStep:
    at: datetime
    automation: str
    node: str
    outcome: str
    reason: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "automation": self.automation,
            "node": self.node,
            "outcome": self.outcome,
            "reason": self.reason,
        }


@dataclass
class Tally:
    """One automation's simulated outcome."""

    entered: Counter[date] = field(default_factory=Counter)
    queued: Counter[date] = field(default_factory=Counter)
    not_entered: Counter[str] = field(default_factory=Counter)  # reason
    nodes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    outcomes: Counter[str] = field(default_factory=Counter)  # completed, goal_reached, exited …
    goals: Counter[str] = field(default_factory=Counter)
    messages: dict[date, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    sent: int = 0
    sent_per_day: Counter[date] = field(default_factory=Counter)
    deferred: int = 0  # messages deferred at least once
    skipped: int = 0
    policy: Counter[tuple[str, str]] = field(default_factory=Counter)  # (defer|skip, rule)
    contacts: set[int] = field(default_factory=set)

    def add(self, other: Tally) -> None:
        """Another part's tally of the same automation (other contacts) added to this one."""
        for mine, theirs in (
            (self.entered, other.entered),
            (self.queued, other.queued),
            (self.not_entered, other.not_entered),
            (self.outcomes, other.outcomes),
            (self.goals, other.goals),
            (self.sent_per_day, other.sent_per_day),
            (self.policy, other.policy),
        ):
            mine.update(theirs)
        for node, counts in other.nodes.items():
            self.nodes[node].update(counts)
        for day, counts in other.messages.items():
            self.messages[day].update(counts)
        self.sent += other.sent
        self.deferred += other.deferred
        self.skipped += other.skipped
        self.contacts |= other.contacts

    def as_dict(self) -> dict[str, Any]:
        entries = sum(self.entered.values()) + sum(self.queued.values())
        return {
            "entries": entries,
            "contacts": len(self.contacts),
            "entries_per_day": {d.isoformat(): n for d, n in sorted(self.entered.items())},
            "queued_per_day": {d.isoformat(): n for d, n in sorted(self.queued.items())},
            "not_entered": dict(ranked(self.not_entered)),
            "nodes": {n: dict(c) for n, c in self.nodes.items()},
            "outcomes": dict(self.outcomes),
            "goals": dict(self.goals),
            "conversion": round(sum(self.goals.values()) / entries, 4) if entries else None,
            "messages_per_day": {d.isoformat(): dict(c) for d, c in sorted(self.messages.items())},
            "messages": {"sent": self.sent, "deferred": self.deferred, "skipped": self.skipped},
            "sent_per_day": {d.isoformat(): n for d, n in sorted(self.sent_per_day.items())},
            "policy": [
                {"action": a, "rule": r, "decisions": n} for (a, r), n in ranked(self.policy)
            ],
        }


class Report:
    def __init__(
        self,
        keys: dict[int, str],
        start: datetime,
        end: datetime,
        timezone: str,
        *,
        watch: set[int] | None = None,  # contacts whose full path is kept; None: everyone's
    ) -> None:
        self.keys = keys
        self.start, self.end = start, end
        self.zone = ZoneInfo(timezone)
        self.watch = watch
        self.tallies: dict[str, Tally] = {key: Tally() for key in keys.values()}
        self.per_contact: Counter[int] = Counter()  # messages sent, every automation
        self.per_week: Counter[tuple[int, int]] = Counter()  # (contact, week) → sent
        self.capped: dict[str, set[int]] = defaultdict(set)  # rule → contacts it held back
        self.collisions: Counter[tuple[str, str]] = Counter()  # (held back, by whose sends)
        self.paths: dict[int, list[PathStep]] = defaultdict(list)
        self.entries: dict[int, list[tuple[str, datetime, bool]]] = defaultdict(list)
        self.outbox: dict[int, list[Message]] = defaultdict(list)
        self.senders: dict[int, list[tuple[datetime, str]]] = {}  # the outbox's (at, automation)
        self.notes: list[str] = []
        self.events = 0
        self.contacts = 0
        self.cpu_seconds = 0.0  # the replay's, in every process it ran in

    def day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def watched(self, contact_id: int) -> bool:
        return self.watch is None or contact_id in self.watch

    # --- fed by the replay, moment by moment ------------------------------------------------

    def moment(
        self,
        now: datetime,
        flushes: list[Any],
        records: list[tuple[int, str, dict[str, Any]]],
        decided: list[Message],
    ) -> None:
        for contact_id, name, props in records:
            self.recorded(now, contact_id, name, props)
        for steps, messages, _finished in flushes:
            for _run, row in steps:
                key = self.keys[row["automation_id"]]
                self._step(key, row["contact_id"], row["node"], row["outcome"], row["reason"], now)
            for run, _step, row in messages:
                key = self.keys[run.automation_id]
                self.tallies[key].messages[self.day(now)][row["channel"]] += 1
        for message in decided:
            self._decided(now, message)

    def recorded(self, now: datetime, contact_id: int, name: str, props: dict[str, Any]) -> None:
        tally = self.tallies.get(props.get("automation"))  # type: ignore[arg-type]
        if tally is None:
            return
        if name == "automation.entered":
            (tally.queued if props.get("queued") else tally.entered)[self.day(now)] += 1
            tally.contacts.add(contact_id)
            if self.watched(contact_id):
                self.entries[contact_id].append(
                    (props["automation"], now, bool(props.get("queued")))
                )
        elif name == "automation.goal_reached":
            tally.goals[props.get("goal", "")] += 1
        elif name in ("automation.completed", "automation.exited"):
            tally.outcomes[props.get("outcome", name.split(".")[1])] += 1

    def _step(
        self, key: str, contact_id: int, node: str, outcome: str, reason: Any, now: datetime
    ) -> None:
        tally = self.tallies[key]
        if outcome == "entry_skipped":
            why = str(reason.get("why", "")).removeprefix("not entered: ")
            tally.not_entered[_SINCE.sub("", why)] += 1
        else:
            tally.nodes[node][outcome] += 1
        if self.watched(contact_id):
            self.paths[contact_id].append(PathStep(now, key, node, outcome, reason))

    def _decided(self, now: datetime, message: Message) -> None:
        tally = self.tallies[message.automation]
        decision = message.decisions[-1][1] if message.decisions else None
        if self.watched(message.contact_id):
            self.outbox[message.contact_id].append(message)
        if decision is not None and decision.action != "send":
            rule = rule_of(decision)
            tally.policy[(decision.action, rule)] += 1
            outcome = "deferred" if decision.action == "defer" else "skipped"
            if outcome == "deferred" and len(message.decisions) == 1:
                tally.deferred += 1
            if outcome == "skipped":
                tally.skipped += 1
            if "cap" in rule:
                self.capped[rule].add(message.contact_id)
                self._collided(message, now)
            why: dict[str, Any] = {"why": decision.reason, "channel": message.channel}
            if decision.until is not None:
                why["until"] = decision.until.isoformat()
            self._step(message.automation, message.contact_id, message.node, outcome, why, now)
        if message.status == "sent":
            tally.sent += 1
            tally.sent_per_day[self.day(now)] += 1
            self.per_contact[message.contact_id] += 1
            week = (now - self.start) // timedelta(days=7)
            self.per_week[(message.contact_id, week)] += 1

    def _collided(self, message: Message, now: datetime) -> None:
        """Whose sends in the last week held this message back (the pairs that defer each
        other)."""
        since = now - timedelta(days=7)
        recent = {a for at, a in self.senders.get(message.contact_id, ()) if at > since}
        for automation in sorted(recent):
            self.collisions[(message.automation, automation)] += 1

    # --- read out --------------------------------------------------------------------------

    def distribution(self, counts: Counter[Any], population: int) -> dict[str, int]:
        """How many contacts got 0, 1, 2, … messages (the last bucket is 5 or more)."""
        buckets: Counter[str] = Counter()
        for n in counts.values():
            buckets[str(n) if n < 5 else "5+"] += 1
        buckets["0"] = max(population - len(counts), 0)
        return {k: buckets[k] for k in ("0", "1", "2", "3", "4", "5+") if buckets[k]}

    def as_dict(self, contact: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "period": {"from": self.start.isoformat(), "to": self.end.isoformat()},
            "events": self.events,
            "contacts": self.contacts,
            "automations": {k: t.as_dict() for k, t in self.tallies.items()},
            "messages_per_contact": self.distribution(self.per_contact, self.contacts),
            "messages_per_contact_week": self.distribution(
                self.per_week, self.contacts * self.weeks
            ),
            "capped": {rule: len(ids) for rule, ids in sorted(self.capped.items())},
            "collisions": [
                {"held_back": a, "by": b, "messages": n} for (a, b), n in ranked(self.collisions)
            ],
            "notes": self.notes,
        }
        if contact is not None:
            out["contact"] = self.path(contact)
        return out

    @property
    def weeks(self) -> int:
        return max(1, -(-(self.end - self.start) // timedelta(days=7)))

    def path(self, contact_id: int) -> dict[str, Any]:
        return {
            "id": contact_id,
            "steps": [s.as_dict() for s in self.paths.get(contact_id, [])],
            "messages": [
                {
                    "automation": m.automation,
                    "node": m.node,
                    "channel": m.channel,
                    "template": m.template,
                    "created_at": m.created_at.isoformat(),
                    "status": m.status,
                    "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                }
                for m in {m.seq: m for m in self.outbox.get(contact_id, [])}.values()
            ],
        }


def merged(parts: list[Report]) -> Report:
    """The reports of parts of one backtest (disjoint sets of contacts) as one report: counts
    add up, contacts' paths are each in one part."""
    out = parts[0]
    for part in parts[1:]:
        for key, tally in part.tallies.items():
            out.tallies[key].add(tally)
        out.per_contact.update(part.per_contact)
        out.per_week.update(part.per_week)
        for rule, ids in part.capped.items():
            out.capped[rule] |= ids
        out.collisions.update(part.collisions)
        out.paths.update(part.paths)
        out.entries.update(part.entries)
        out.outbox.update(part.outbox)
        out.senders.update(part.senders)
        out.events += part.events
        out.contacts += part.contacts
        out.cpu_seconds += part.cpu_seconds
    return out
